// session.go: the session type (one signalling user), its lifecycle and teardown. The other
// session_*.go files hold its concerns: signal (socket and dispatch), join (join, renew, token
// expiry), publish, subscribe and negotiate (offers, answers, ICE restarts).

package sfu

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

const (
	sendQueue  = 256
	writeWait  = 5 * time.Second
	gatherWait = 5 * time.Second
	// restartAfter is how long a peer connection may stay disconnected (no packets for 3 s
	// before that) before the hub restarts its ICE; a failed one restarts at once.
	restartAfter = 2 * time.Second
	// restartMinGap is the least time between two restart requests for one connection.
	restartMinGap = time.Second
)

type subKey struct {
	uid  uint32
	kind string
}

// subscription is one forwarded track sent to one subscriber.
type subscription struct {
	track       *track
	transceiver *webrtc.RTPTransceiver // nil for a data-channel subscription
	feed        *auFeed                // a data-channel subscription's (aufeed.go)
	// fresh: the subscriber has not yet been given a keyframe request for this track.
	fresh bool
}

// session is one user: one WebSocket, its peer connections and its tracks.
type session struct {
	svc    *Service
	log    *slog.Logger
	addr   string // the client address (per-address limits, rate-limited logs)
	conn   *websocket.Conn
	out    chan []byte
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	ch        *channel
	uid       uint32
	claims    *token.Claims
	pub       *webrtc.PeerConnection
	published map[string]*track
	sub       *webrtc.PeerConnection
	subs      map[subKey]*subscription
	leaveWhy  string
	timers    []*time.Timer
	host      string // the Host header of the WebSocket request

	// Users without signalling (external.go): conn is nil, events (if set) takes what would
	// be sent, view is a WHEP viewer's connection, and noTakeover keeps a minted uid its own.
	events     func(*rtc.Message)
	view       *viewer
	noTakeover bool
	// local: a relay's copy of a user of another hub (relay.go): never placed elsewhere.
	local bool

	// heard is when the client last said anything on the signalling socket (unix
	// nanoseconds); holding is set while a silent socket is kept for a live media path.
	heard   atomic.Int64
	holding atomic.Bool

	negMu          sync.Mutex
	awaitingAnswer bool
	dirty          bool
	iceRestart     bool // the next subscribe offer restarts ICE
	restartSent    bool // the offer awaiting its answer restarts ICE

	lastRestart map[string]time.Time // connection → the client's last restart request (under mu)

	// read loop only: message and request rate limits, and the flood allowance
	msgLimit, opLimit, floodLimit *bucket

	// Resume (resume.go): the session's secret when its client can resume (set at join,
	// under mu); the sequence of its hub messages and the last ones sent (under sendMu); the
	// last client message handled (read loop only); resumes handed to it, and one taken while
	// its socket was still up (under mu); handedOver, on the session of a fresh socket whose
	// resume gave that socket to another session.
	resumeTok  string
	canResume  atomic.Bool
	sendMu     sync.Mutex
	seq        uint64
	sent       []sentMsg
	lastID     uint64
	resumeCh   chan resumeReq
	preempted  *resumeReq
	waited     time.Duration // waited for a resume in vain (under mu)
	handedOver atomic.Bool
}

func newSession(svc *Service, conn *websocket.Conn, remote string) *session {
	ctx, cancel := context.WithCancel(svc.ctx)
	o := svc.opts
	return &session{
		svc:        svc,
		log:        svc.log.With("remote", remote),
		addr:       remote,
		msgLimit:   newBucket(o.MessageRate, o.MessageBurst),
		opLimit:    newBucket(o.OpRate, o.OpBurst),
		floodLimit: newBucket(5, o.FloodLimit),
		conn:       conn,
		out:        make(chan []byte, sendQueue),
		ctx:        ctx,
		cancel:     cancel,
		published:  map[string]*track{},
		subs:       map[subKey]*subscription{},
		leaveWhy:   "quit",
		resumeCh:   make(chan resumeReq),
	}
}

// run serves the session until its socket closes or the service stops, then tears it down.
// A resumable session whose socket is lost (or replaced by its client) goes on on the fresh
// socket its client resumes it on (resume.go).
func (s *session) run() {
	joinBy := time.AfterFunc(s.svc.opts.JoinDeadline, func() {
		if s.channel() == nil && s.ctx.Err() == nil {
			s.svc.joinTimeouts.Add(1)
			s.svc.noisy(slog.LevelInfo, s.addr, "signalling socket closed: no join in time", "deadline", s.svc.opts.JoinDeadline)
			s.cancel()
		}
	})
	for conn := s.conn; conn != nil; {
		lost := s.serve(conn)
		joinBy.Stop()
		conn = s.nextConn(lost)
	}
	s.cancel()
	s.teardown()
}

// serve runs the session's signalling on conn until the socket ends, the session ends, or
// a resume on a fresh socket preempts it; lost is why a socket failed (no goodbye), or nil.
func (s *session) serve(conn *websocket.Conn) (lost error) {
	connCtx, cancelConn := context.WithCancel(s.ctx)
	defer cancelConn()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop(connCtx, cancelConn, conn)
	}()
	go func() {
		select {
		case r := <-s.resumeCh: // the client resumes on a fresh socket: this one is stuck
			s.mu.Lock()
			s.preempted = &r
			s.mu.Unlock()
			cancelConn()
		case <-connCtx.Done():
		}
		// Let the writer flush what is queued (a last reply or event) before the socket closes;
		// closing it also unblocks the read loop.
		select {
		case <-writerDone:
		case <-time.After(writeWait):
		}
		if !s.handedOver.Load() {
			conn.Close()
		}
	}()
	lost = s.readLoop(conn)
	cancelConn()
	<-writerDone
	return lost
}

func (s *session) channel() *channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *session) uidNow() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uid
}

func (s *session) setLeaveReason(r string) {
	s.mu.Lock()
	if s.leaveWhy == "quit" || r != "timeout" {
		s.leaveWhy = r
	}
	s.mu.Unlock()
}

// after runs f after d unless the session has ended by then.
func (s *session) after(d time.Duration, f func()) {
	t := time.AfterFunc(d, func() {
		if s.ctx.Err() == nil {
			f()
		}
	})
	s.mu.Lock()
	s.timers = append(s.timers, t)
	s.mu.Unlock()
}

// teardown removes the user from its channel, stops its tracks and closes its connections.
func (s *session) teardown() {
	s.forgetResume()
	s.mu.Lock()
	ch, uid, why := s.ch, s.uid, s.leaveWhy
	for _, t := range s.timers {
		t.Stop()
	}
	s.mu.Unlock()
	for _, kind := range []string{rtc.KindAudio, rtc.KindVideo} {
		s.unpublishKind(kind)
	}
	s.mu.Lock()
	subs := s.subs
	s.subs = map[subKey]*subscription{}
	pub, sub := s.pub, s.sub
	s.mu.Unlock()
	for _, x := range subs {
		x.track.removeSubscriber(s)
		if x.feed != nil {
			x.feed.close()
		}
	}
	if pub != nil {
		pub.Close()
	}
	if sub != nil {
		sub.Close()
	}
	if ch == nil {
		return
	}
	leave := func() {
		if s.svc.exit(ch, uid, s) {
			s.log.Info("user left", "reason", why)
			ch.broadcast(uid, &rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventUserLeft, UID: &uid, Reason: why})
		}
	}
	s.mu.Lock()
	grace := s.svc.opts.ReconnectGrace - s.waited // a wait for a resume was part of it
	s.mu.Unlock()
	if why == "timeout" && grace > 0 && s.svc.ctx.Err() == nil && s.conn != nil {
		// The connection broke without a goodbye: keep the user's place for a while, so a
		// reconnect (the agent rejoins by itself) does not look like leaving to the others.
		s.log.Info("user lost; keeping its place", "grace", grace)
		time.AfterFunc(grace, leave)
		return
	}
	leave()
}
