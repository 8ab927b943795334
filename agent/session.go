package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/internal/backoff"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
)

// A call's connection to the hub is a session: the rtc.Client with its two peer
// connections, and every goroutine that uses them (the senders' RTCP readers, the remote
// audio players, token renewals). The call's supervisor owns one session at a time and ends
// it — closes the client and waits for all of its goroutines — before it makes the next.
// An rtc.Client whose signalling socket died keeps its peer connections (and the tracks'
// bindings to them, which every later frame is written to) until it is closed: a rejoin that
// forgot the old session leaked about 18 goroutines, a file descriptor and 1.35 MB each time.

// Rejoin back-off after the connection to the hub is lost: 0.5 s doubling to 30 s,
// jittered, so a fleet whose hub restarted does not come back in lockstep. An attempt the
// hub never answered (rtc.Unanswered: the connect timed out, no route; it cost the hub
// nothing) is retried instead after 1-2 s (jittered), for up to rejoinQuickFor of such
// silence: a path that comes back is found within about 2 s, not after a step that grew to
// 30 s meanwhile. Any answer (refused connect, HTTP error, refused join) goes back to the
// long back-off, which keeps counting from where it was. A join the configured hub redirected
// to a cluster hub that cannot be dialled (rtc.ErrHolderUnreachable: the channel's hub died,
// and its lease has not run out yet) is retried after 0.25-0.5 s, for up to rejoinSoonFor (the
// longest cluster lease): the channel is placed on a live hub within the lease (3 s), and a
// grown step would add seconds to the call's outage.
const (
	rejoinFirst    = 500 * time.Millisecond
	rejoinMax      = 30 * time.Second
	rejoinQuick    = 2 * time.Second
	rejoinQuickFor = 5 * time.Minute
	rejoinSoon     = 500 * time.Millisecond
	rejoinSoonFor  = time.Minute
	// hubFailoverResume bounds the resume of a lost socket when the call has other entry
	// points (entries.go; rtc.DefaultResumeFor otherwise).
	hubFailoverResume = 3 * time.Second
)

type session struct {
	client *rtc.Client
	ctx    context.Context // ends with end (or the call)
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu sync.Mutex
	// remote audio subscriptions by uid, cancelled when the user unpublishes or leaves
	listening map[uint32]context.CancelFunc
}

func newSession(parent context.Context, client *rtc.Client) *session {
	ctx, cancel := context.WithCancel(parent)
	return &session{client: client, ctx: ctx, cancel: cancel, listening: map[uint32]context.CancelFunc{}}
}

// goRun runs f as one of the session's goroutines: end waits for it.
func (s *session) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// end closes the session's client (its peer connections, so their senders' RTCP readers
// and remote tracks return) and waits for every goroutine of the session. It may be called
// more than once.
func (s *session) end() {
	s.once.Do(func() {
		s.cancel()
		s.client.Close()
		s.wg.Wait()
	})
}

// startListening registers a subscription to uid's audio; false if there is one already.
func (s *session) startListening(uid uint32) (context.Context, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.listening[uid]; ok {
		return nil, false
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.listening[uid] = cancel
	return ctx, true
}

func (s *session) stopListeningTo(uid uint32) {
	s.mu.Lock()
	cancel := s.listening[uid]
	delete(s.listening, uid)
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// setSession makes s the call's current session (nil: between two).
func (c *call) setSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess, c.client = s, nil
	if s != nil {
		c.client = s.client
	}
}

// connect dials the hub, joins and publishes the call's tracks: a new session, whose
// goroutines have started. On error nothing of it is left running.
func (c *call) connect(ctx context.Context) (*session, error) {
	start := time.Now()
	tok := c.p.token
	if tok == "" {
		var err error
		if tok, err = c.fetchToken(ctx); err != nil {
			return nil, err
		}
	}
	// Always through the entry hub (the configured one, or the next with hubFailover when it
	// is down: entries.go): in a cluster it sends the agent on to the hub that holds the
	// channel now (a rejoin after that hub died lands on its successor).
	// The frames written before the publish connection was up were dropped: replay the
	// camera's latest keyframe and what followed it, or ask for a new one (warmvideo.go).
	if c.cam != nil {
		c.warm.arm()
	}
	onConnected := func(conn string) {
		if conn == rtc.ConnPublish && c.cam != nil && !c.warm.replay(c.video.WriteSample) {
			c.cam.RequestKeyframe()
		}
	}
	// With other hubs to go through, a hub that stops answering is not waited for long.
	var resumeFor time.Duration
	if len(c.entries) > 1 {
		resumeFor = hubFailoverResume
	}
	client, res, err := rtc.DialJoin(ctx, rtc.ClientOptions{URL: c.hub(), API: c.a.api, Logger: c.log, TLS: c.a.hubTLS,
		OnConnected: onConnected, ResumeFor: resumeFor},
		c.p.appID, c.p.channel, c.p.uid, tok)
	if err != nil {
		var pe *rtc.Error
		if errors.As(err, &pe) {
			return nil, errorf("join "+c.p.channel, err)
		}
		return nil, err
	}
	joined := time.Now()
	s := newSession(c.ctx, client)
	var tracks []webrtc.TrackLocal
	if c.video != nil {
		tracks = append(tracks, c.video)
	}
	if c.audio != nil {
		tracks = append(tracks, c.audio)
	}
	senders, err := client.Publish(ctx, tracks...)
	if err != nil {
		s.end()
		return nil, errorf("publish", err)
	}
	for i, snd := range senders {
		onKeyframeRequest := func() {}
		if tracks[i] == webrtc.TrackLocal(c.video) {
			onKeyframeRequest = c.cam.RequestKeyframe
		}
		s.goRun(func() { peer.DrainRTCP(snd, peer.Feedback{Keyframe: onKeyframeRequest}) })
	}
	c.mu.Lock()
	c.users = map[uint32]bool{}
	for _, u := range res.Users {
		c.users[u.UID] = true
	}
	c.mu.Unlock()
	for _, u := range res.Users {
		if u.Audio {
			c.listen(s, u.UID)
		}
	}
	c.log.Info("joined channel", "users", len(res.Users), "hub", client.URL(),
		"join took", joined.Sub(start).Round(time.Millisecond), "publish took", time.Since(joined).Round(time.Millisecond))
	return s, nil
}

// supervise is the call's connection loop: it follows the current session's events until
// its connection to the hub ends, ends that session, and makes the next one, with back-off,
// until the call stops. It owns every session from first on: when it returns, none is left.
func (c *call) supervise(first *session) {
	bo := backoff.New(rejoinFirst, rejoinMax)
	s := first
	for {
		c.followEvents(s)
		lost := s.client.Err()
		c.setSession(nil)
		s.end()
		if c.ctx.Err() != nil || c.leaving.Load() {
			return
		}
		c.log.Warn("connection to hub lost; rejoining", "err", lost)
		// A kept-alive connection to the token service shares the fate of the signalling
		// one (a cut path, a dead hub): the rejoin's token request must connect anew.
		c.a.hubHTTP.CloseIdleConnections()
		c.a.postState(control.State{State: "joining", Channel: c.p.channel, UID: c.p.uid, Error: fmt.Sprint(lost)})
		var refused error
		if s, refused = c.rejoin(bo); s == nil {
			if refused != nil {
				c.a.gaveUp(c, refused)
			}
			return // the call stopped, or cannot go on
		}
		c.setSession(s)
		if c.leaving.Load() { // stop came between: it saw no session to say goodbye on
			c.setSession(nil)
			s.end()
			return
		}
		c.publishState()
		c.a.metrics.rejoins.Add(1)
	}
}

// rejoin makes a new session, waiting out bo before each attempt, or the short quick step
// after an attempt the hub never answered (see rejoinQuick); nil once the call stops. It
// gives up (nil and why) when the hub refuses the join command's own token for a reason
// no retry changes (expired, not for this channel or uid, not genuine): the agent does not
// mint another in its caller's name, so the call ends (ARCHITECTURE: a call whose token
// expires without renewal leaves).
func (c *call) rejoin(bo *backoff.Backoff) (*session, error) {
	quick, soon := backoff.New(rejoinQuick, rejoinQuick), backoff.New(rejoinSoon, rejoinSoon)
	var unansweredSince, holderSince time.Time // starts of the current runs of such failures
	down := 0                                  // entry points found down in a row
	next := bo
	for {
		delay, err := next.Wait(c.ctx, nil)
		if err != nil {
			return nil, nil
		}
		jctx, cancel := context.WithTimeout(c.ctx, c.a.cfg.JoinTimeout)
		attempt := time.Now()
		s, err := c.connect(jctx)
		cancel()
		if err == nil {
			// Joined and publishing, media flowing: the path is good again, so the next
			// loss starts from the first step.
			bo.Reset()
			return s, nil
		}
		if c.ctx.Err() != nil {
			return nil, nil
		}
		if c.p.token != "" && tokenFinal(err) {
			c.log.Warn("rejoin refused for the join command's token: the call ends", "err", err)
			return nil, err
		}
		now := time.Now()
		next = rejoinStep(err, now, &unansweredSince, bo, quick)
		if holderDown(err, now, &holderSince) {
			next = soon
		}
		// Its entry hub is dead: the next entry point at once, until each was tried once.
		if c.nextEntry(err) {
			if down++; down%len(c.entries) != 0 {
				next = soon
			}
		} else {
			down = 0
		}
		c.log.Warn("rejoin failed", "err", err, "waited", delay.Round(time.Millisecond), "took", time.Since(attempt).Round(time.Millisecond),
			"unanswered", rtc.Unanswered(err), "quick retry", next == quick, "holder down", next == soon)
		c.a.postState(control.State{State: "joining", Channel: c.p.channel, UID: c.p.uid, Error: err.Error()})
	}
}

// rejoinStep picks the back-off for the attempt after one that failed with err at now:
// quick while the hub has not answered for less than rejoinQuickFor, bo otherwise.
// *since is the start of the current run of unanswered attempts (zero: none).
func rejoinStep(err error, now time.Time, since *time.Time, bo, quick *backoff.Backoff) *backoff.Backoff {
	if !rtc.Unanswered(err) {
		*since = time.Time{}
		return bo
	}
	if since.IsZero() {
		*since = now
	}
	if now.Sub(*since) < rejoinQuickFor {
		return quick
	}
	return bo
}

// tokenFinal reports whether err is the hub refusing a token in a way no retry of the same
// token changes.
func tokenFinal(err error) bool {
	var pe *rtc.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case rtc.CodeTokenExpired, rtc.CodeTokenInvalid, rtc.CodeTokenMissing, rtc.CodeTokenWrongApp,
		rtc.CodeTokenWrongChannel, rtc.CodeTokenWrongUID:
		return true
	}
	return false
}

// holderDown reports whether the attempt that failed with err at now should be retried on the
// short step: the entry hub redirected it to a hub out of reach (rtc.ErrHolderUnreachable), for
// less than rejoinSoonFor since *since, the start of that run (zero: none).
func holderDown(err error, now time.Time, since *time.Time) bool {
	if !errors.Is(err, rtc.ErrHolderUnreachable) {
		*since = time.Time{}
		return false
	}
	if since.IsZero() {
		*since = now
	}
	return now.Sub(*since) < rejoinSoonFor
}

// followEvents handles the hub's events until the session's client ends or the call stops.
func (c *call) followEvents(s *session) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case m, ok := <-s.client.Events():
			if !ok {
				return
			}
			c.onEvent(s, m)
		}
	}
}
