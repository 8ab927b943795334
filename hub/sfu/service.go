package sfu

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// Options configure a Service.
type Options struct {
	// API is the process's webrtc.API (rtc.NewAPI).
	API *webrtc.API
	// Certificate returns the App certificate of an App ID; false for an unknown App.
	Certificate func(appID string) (string, bool)
	Logger      *slog.Logger
	// Now is the clock (tests may move it); time.Now when nil.
	Now func() time.Time
	// ICEServers, when set, returns the STUN/TURN servers (with fresh credentials) a joining
	// user gets in the join reply; host is the Host the client reached the hub at, expires
	// the user's token expiry (a TURN credential should not outlive it).
	ICEServers func(host, appID string, uid uint32, expires time.Time) []rtc.ICEServer
	// WillExpireBefore is how long before a token's expiry the user is warned (30 s).
	WillExpireBefore time.Duration
	// ReconnectGrace is how long a user whose connection broke (no goodbye) keeps its place
	// in the channel: rejoining with the same uid within it, the others see its tracks go and
	// come back but never a user-left (10 s; negative: none).
	ReconnectGrace time.Duration
	// ICERestartWait is how long a peer connection whose ICE failed (the media path died
	// while the signalling socket lives) may take to come back through an ICE restart
	// before the user counts as lost (20 s: browsers notice a dead path late).
	ICERestartWait time.Duration
}

// Stats are counters for /metrics.
type Stats struct {
	Channels, Users  int
	ForwardedPackets uint64
	ForwardedBytes   uint64
	Joins, Refused   uint64
	// ICERestarts counts ICE restarts, asked for by clients or started by the hub: media
	// paths that died while the signalling socket lived.
	ICERestarts uint64
}

// Service runs the channels of every App.
type Service struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	upgrader websocket.Upgrader

	mu       sync.Mutex
	channels map[channelKey]*channel

	forwardedPackets, forwardedBytes atomic.Uint64
	joins, refused                   atomic.Uint64
	iceRestarts                      atomic.Uint64
}

// New returns a running Service; Close ends every session.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WillExpireBefore == 0 {
		o.WillExpireBefore = 30 * time.Second
	}
	if o.ICERestartWait <= 0 {
		o.ICERestartWait = 20 * time.Second
	}
	if o.ReconnectGrace == 0 {
		o.ReconnectGrace = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		opts:     o,
		log:      o.Logger.With("component", "sfu"),
		ctx:      ctx,
		cancel:   cancel,
		channels: map[channelKey]*channel{},
		upgrader: websocket.Upgrader{
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
			// The SDK may be loaded by any web app (as a cloud SDK is); tokens, not origins,
			// decide who joins.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
}

// ServeHTTP upgrades the request to the signalling WebSocket and serves one user.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	if s.ctx.Err() != nil {
		conn.Close()
		return
	}
	sess := newSession(s, conn, r.RemoteAddr)
	sess.host = r.Host
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sess.run()
	}()
}

// Close ends every session and waits for them.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Stats returns the current counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	st := Stats{Channels: len(s.channels)}
	for _, c := range s.channels {
		c.mu.Lock()
		st.Users += len(c.users)
		c.mu.Unlock()
	}
	s.mu.Unlock()
	st.ForwardedPackets = s.forwardedPackets.Load()
	st.ForwardedBytes = s.forwardedBytes.Load()
	st.Joins = s.joins.Load()
	st.Refused = s.refused.Load()
	st.ICERestarts = s.iceRestarts.Load()
	return st
}

// ChannelUsers returns the uids in a channel (for tests and the directory), sorted.
func (s *Service) ChannelUsers(app, name string) []uint32 {
	s.mu.Lock()
	c := s.channels[channelKey{app, name}]
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	var uids []uint32
	for _, u := range c.snapshot(0) {
		uids = append(uids, u.UID)
	}
	return uids
}

// enter puts sess into the channel under uid and returns the channel and the session it
// replaces (same uid), if any.
func (s *Service) enter(key channelKey, uid uint32, sess *session) (*channel, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channels[key]
	if c == nil {
		c = &channel{key: key, users: map[uint32]*session{}}
		s.channels[key] = c
	}
	c.mu.Lock()
	old := c.users[uid]
	c.users[uid] = sess
	c.mu.Unlock()
	return c, old
}

// exit removes sess from its channel (if it is still the one under its uid) and drops the
// channel when it is empty. It reports whether sess was removed.
func (s *Service) exit(c *channel, uid uint32, sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users[uid] != sess {
		return false
	}
	delete(c.users, uid)
	if len(c.users) == 0 && s.channels[c.key] == c {
		delete(s.channels, c.key)
	}
	return true
}

// freeUID picks an unused non-zero uid in the channel for a join without one.
func (s *Service) freeUID(key channelKey) uint32 {
	s.mu.Lock()
	c := s.channels[key]
	s.mu.Unlock()
	for {
		uid := randomUID()
		if c == nil || c.lookup(uid) == nil {
			return uid
		}
	}
}
