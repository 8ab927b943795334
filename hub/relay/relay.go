// Package relay runs a hub's relays of channels held by other hubs (docs/scaling.md,
// "Relays"). A relay joins the channel's origin hub as a client with a hub-to-hub identity
// (a uid of the reserved range, UID, and a token this hub signs itself: the App
// certificates are shared), mirrors the origin's users into this hub's copy of the channel
// as users without signalling, subscribes to their tracks and feeds them in (sfu.External
// Feed): the origin sends one copy of each track to each relay hub, whatever the viewers
// here. Viewers' keyframe requests here reach the origin as PLIs on the relay's subscribe
// connection; their talk-back is published at the origin (upstream.go). A relay whose origin
// ends the connection finds the channel's hub again (Options.Origin) and relays from there.
// A relay closes once this hub has had no viewer of the channel for Linger.
package relay

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"sync"
	"time"

	"github.com/camagent/camagent/hub/sfu"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// Reserved uids: relays join origins with uids from here up (0xf0000000 and above); the
// uids a hub assigns stay below 2^31.
const reservedUIDs = 0xf0000000

// UID is the uid hub hubID's relays join origins with.
func UID(hubID string) uint32 { return reservedUIDs | crc32.ChecksumIEEE([]byte(hubID))&0x0fffffff }

// IsRelay reports whether uid is a relay's (in the reserved range).
func IsRelay(uid uint32) bool { return uid >= reservedUIDs }

// Options configure a hub's relays.
type Options struct {
	HubID   string
	Service *sfu.Service
	API     *webrtc.API
	// Mint signs a token for uid in app's channel with every privilege (hub-to-hub use).
	Mint func(app, channel string, uid uint32) (string, error)
	// Keep renews this hub's record as a relay of the channel while it runs; Drop removes
	// it when the relay closes (hub/cluster's KeepRelay, DropRelay).
	Keep func(ctx context.Context, app, channel string, viewers int) error
	Drop func(ctx context.Context, app, channel string) error
	// Origin finds the channel's hub again after the relay lost its origin: its base URL,
	// or here when this hub holds it now ("" and false: nobody holds it yet).
	Origin func(ctx context.Context, app, channel string) (url string, here bool, err error)
	// Linger is how long a relay stays without viewers here (2 s).
	Linger time.Duration
	Logger *slog.Logger
}

// Relays are the relays a hub runs.
type Relays struct {
	opts Options
	log  *slog.Logger
	ctx  context.Context
	wg   sync.WaitGroup

	mu      sync.Mutex
	running map[key]*relay
}

type key struct{ app, channel string }

// New prepares a hub's relays; they live until ctx ends (Wait waits for them).
func New(ctx context.Context, o Options) *Relays {
	if o.Linger <= 0 {
		o.Linger = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Relays{opts: o, log: o.Logger.With("component", "relay"), ctx: ctx, running: map[key]*relay{}}
}

// Running counts the relays running now.
func (r *Relays) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Wait waits for every relay to close (after the context given to New ends).
func (r *Relays) Wait() { r.wg.Wait() }

// Relay starts relaying app's channel from the hub at origin, unless it runs already, and
// returns once this hub's copy holds the origin's users (or the relay failed).
func (r *Relays) Relay(ctx context.Context, app, channel, origin string) error {
	k := key{app, channel}
	for {
		r.mu.Lock()
		rl := r.running[k]
		if rl == nil {
			if r.ctx.Err() != nil {
				r.mu.Unlock()
				return errors.New("relay: the hub is stopping")
			}
			rl = r.start(k, origin)
		}
		r.mu.Unlock()
		select {
		case <-rl.ready:
		case <-ctx.Done():
			return fmt.Errorf("relay: waiting for the relay from %s: %w", origin, ctx.Err())
		}
		select {
		case <-rl.stopping:
		default:
			return nil // running
		}
		if rl.err != nil {
			return rl.err
		}
		select { // closing (no viewer for Linger): wait, then start a new one
		case <-rl.finished:
		case <-ctx.Done():
			return fmt.Errorf("relay: waiting for the old relay from %s to close: %w", origin, ctx.Err())
		}
	}
}

// start runs a new relay of k (r.mu held).
func (r *Relays) start(k key, origin string) *relay {
	rl := &relay{rs: r, key: k, origin: origin, users: map[uint32]*sfu.External{}, up: map[uint32]bool{},
		ready: make(chan struct{}), stopping: make(chan struct{}), finished: make(chan struct{}),
		log: r.log.With("app", k.app, "channel", k.channel, "origin", origin)}
	r.running[k] = rl
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(rl.finished)
		rl.run()
		r.mu.Lock()
		delete(r.running, k)
		r.mu.Unlock()
	}()
	return rl
}

// relay is one channel relayed from its origin hub.
type relay struct {
	rs     *Relays
	key    key
	origin string
	log    *slog.Logger
	ready  chan struct{} // closed once the origin's users are here, or on failure (err)
	err    error
	// stopping is closed when the relay starts closing, finished when it has closed.
	stopping, finished chan struct{}

	mu    sync.Mutex
	users map[uint32]*sfu.External // the origin's users, mirrored here
	up    map[uint32]bool          // viewers here whose talk-back goes to the origin (upstream.go)

	lastViewer time.Time // when the relay last had a viewer here (run's goroutine only)
}

// run joins the origin, mirrors its users until the relay has had no viewer here for
// Linger, then closes. When the origin ends the connection (it stopped or died) the relay
// keeps its viewers and looks for the channel's hub again (rejoin).
func (rl *relay) run() {
	ctx, cancel := context.WithCancel(rl.rs.ctx)
	defer cancel()
	c, joined, err := rl.join(ctx, rl.originURL())
	if err != nil {
		rl.err = err
		close(rl.ready)
		close(rl.stopping)
		rl.log.Warn("relay not started", "err", err)
		return
	}
	defer func() {
		close(rl.stopping) // new viewers wait for the close, then start a new relay
		rl.close()
	}()
	rl.sync(ctx, c, joined.Users)
	close(rl.ready)
	rl.log.Info("relay started", "users", len(joined.Users))
	for {
		lost := rl.serve(ctx, c)
		c.Close()
		if !lost {
			return
		}
		if c, joined = rl.rejoin(ctx); c == nil {
			return
		}
		rl.sync(ctx, c, joined.Users)
		rl.log.Info("relay joined the channel's new hub", "users", len(joined.Users))
	}
}

// serve follows the origin's events and keeps the relay's record and talk-back upstreams,
// until ctx ends or the relay has had no viewer for Linger (false) or the origin ended the
// connection (true).
func (rl *relay) serve(ctx context.Context, c *rtc.Client) (originLost bool) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	poll := time.NewTicker(upstreamPoll)
	defer poll.Stop()
	renewed := time.Now()
	rl.lastViewer = time.Now()
	for {
		select {
		case <-ctx.Done():
			return false
		case m, ok := <-c.Events():
			if !ok {
				rl.log.Warn("relay connection ended by the origin", "err", c.Err())
				return true
			}
			rl.event(ctx, c, m)
		case <-poll.C:
			rl.upstreams(ctx)
		case now := <-tick.C:
			if !rl.keep(ctx, now) {
				return false
			}
			if now.Sub(renewed) > TokenTTL/2 {
				renewed = now
				rl.renew(ctx, c)
			}
		}
	}
}

// keep renews the relay's record with its viewers here; false once it has had none for Linger.
func (rl *relay) keep(ctx context.Context, now time.Time) bool {
	o := rl.rs.opts
	viewers := o.Service.ChannelViewers(rl.key.app, rl.key.channel)
	if viewers > 0 {
		rl.lastViewer = now
	} else if now.Sub(rl.lastViewer) >= o.Linger {
		rl.log.Info("relay closed: no viewer here")
		return false
	}
	if err := o.Keep(ctx, rl.key.app, rl.key.channel, viewers); err != nil {
		rl.log.Warn("renewing the relay's record", "err", err)
	}
	return true
}

// rejoin looks for the channel's hub each second after the origin was lost (its users here
// stay meanwhile) and joins it: nil when the relay should close instead (no viewer for
// Linger, the hub stopping, or the channel now held here: its publishers join here then).
func (rl *relay) rejoin(ctx context.Context) (*rtc.Client, *rtc.JoinResult) {
	o := rl.rs.opts
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case now := <-tick.C:
			if !rl.keep(ctx, now) {
				return nil, nil
			}
		}
		url, here, err := o.Origin(ctx, rl.key.app, rl.key.channel)
		switch {
		case err != nil:
			rl.log.Warn("relay: looking for the channel's hub", "err", err)
			continue
		case here:
			rl.log.Info("relay closed: the channel runs here now")
			return nil, nil
		case url == "":
			continue // nobody holds it yet: its publishers have not come back
		}
		c, joined, err := rl.join(ctx, url)
		if err != nil {
			rl.log.Debug("relay: joining the channel's hub", "at", url, "err", err)
			continue
		}
		rl.mu.Lock()
		rl.origin = url
		rl.mu.Unlock()
		return c, joined
	}
}

// sync mirrors users, the origin's users now, and takes out of the copy those no longer there.
func (rl *relay) sync(ctx context.Context, c *rtc.Client, users []rtc.User) {
	there := map[uint32]bool{}
	for _, u := range users {
		there[u.UID] = true
		rl.mirror(ctx, c, u.UID, u.Audio, u.Video, true)
	}
	rl.mu.Lock()
	var gone []*sfu.External
	for uid, e := range rl.users {
		if !there[uid] {
			gone = append(gone, e)
			delete(rl.users, uid)
		}
	}
	rl.mu.Unlock()
	for _, e := range gone {
		e.Close()
	}
}

func (rl *relay) originURL() string {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.origin
}

// TokenTTL is the life of the tokens a relay's Mint signs; they are renewed at half of it.
const TokenTTL = 24 * time.Hour

// join dials the origin (no redirect: a relay joins the origin or nothing) with the relay uid.
func (rl *relay) join(ctx context.Context, origin string) (*rtc.Client, *rtc.JoinResult, error) {
	o := rl.rs.opts
	uid := UID(o.HubID)
	tok, err := o.Mint(rl.key.app, rl.key.channel, uid)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: sign the relay's token: %w", err)
	}
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: origin, API: o.API, Logger: rl.log})
	if err != nil {
		return nil, nil, fmt.Errorf("relay: dial the origin: %w", err)
	}
	res, err := c.Join(ctx, rl.key.app, rl.key.channel, uid, tok)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("relay: join the origin: %w", err)
	}
	return c, res, nil
}

func (rl *relay) event(ctx context.Context, c *rtc.Client, m *rtc.Message) {
	if m.UID == nil {
		return
	}
	uid := *m.UID
	switch m.Event {
	case rtc.EventUserJoined:
		rl.mirror(ctx, c, uid, false, false, false)
	case rtc.EventUserPublished:
		rl.mirror(ctx, c, uid, m.Kind == rtc.KindAudio, m.Kind == rtc.KindVideo, false)
	case rtc.EventUserLeft:
		rl.mu.Lock()
		e := rl.users[uid]
		delete(rl.users, uid)
		rl.mu.Unlock()
		if e != nil {
			e.Close()
		}
	}
}
