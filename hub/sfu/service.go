package sfu

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/hub/ratelog"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// Options configure a Service.
type Options struct {
	// API is the process's webrtc.API (rtc.NewAPI).
	API *webrtc.API
	// Certificate returns the current App certificate of an App ID; false for an unknown App.
	Certificate func(appID string) (string, bool)
	// Verify returns the certificate of an App ID with key id kid, the current one or a
	// previous one still accepted while a rotation overlaps (kid "": the current one); false
	// for an unknown App or key. Nil: only the current certificate, matched by kid.
	Verify func(appID, kid string) (string, bool)
	// ClientAddr names the client of a request for the per-address limit and logs (the
	// caller resolves trusted proxies); nil: the host of r.RemoteAddr.
	ClientAddr func(r *http.Request) string
	Logger     *slog.Logger
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

	// JoinDeadline is how long a signalling socket may stay open without joining (10 s).
	JoinDeadline time.Duration
	// PingInterval is how often the hub pings each signalling socket (1 s); PongWait is how
	// long a socket may stay silent (no message, ping or pong) before the hub closes it (6 s,
	// longer than a short network cut plus TCP's retransmission back-off after it).
	PingInterval time.Duration
	PongWait     time.Duration
	// MaxSilent bounds how long a silent socket is kept while the session's media path still
	// hears the client (rtc.DefaultMaxSilent, 20 s; rtc/liveness.go).
	MaxSilent time.Duration
	// ResumeWait is how long a session whose socket was lost waits for its client to resume
	// it on a fresh socket (resume.go; clients that said they can), before it ends (10 s).
	ResumeWait time.Duration
	// MaxPerAddress caps the signalling sockets of one client address (32); the next is
	// refused with 429 before the WebSocket upgrade.
	MaxPerAddress int
	// MaxSessions caps the signalling sockets in total (2000); the next is refused with 503.
	MaxSessions int
	// MessageRate and MessageBurst limit a session's messages (20/s, burst 50); OpRate and
	// OpBurst its join, publish, subscribe, unsubscribe, renew and restart requests (5/s,
	// burst 20). A message over a limit is answered RATE_LIMITED; a session that keeps
	// flooding (FloodLimit refusals more than the 5/s it is forgiven; 100) is closed.
	MessageRate  float64
	MessageBurst int
	OpRate       float64
	OpBurst      int
	FloodLimit   int
	// WarmStartAge: a new video subscriber starts at once from the publisher's last keyframe
	// when it is at most this old (100 ms; negative: never, always ask for a new keyframe).
	WarmStartAge time.Duration
	// GiveBackQuiet: when the users have fallen to half their peak (by 10 or more) and no one
	// has left for this long, the hub returns the freed memory to the OS (giveback.go; 5 s,
	// at most every 30 s; negative: never).
	GiveBackQuiet time.Duration
	// Placer, when set, decides which hub of a cluster runs a channel: a join whose channel
	// runs elsewhere is answered REDIRECT (placer.go).
	Placer Placer
	// Relayer, when set, relays channels of other hubs here for the viewers the Placer (a
	// ViewerPlacer) puts on this hub (relay.go).
	Relayer Relayer
}

// Defaults of the limits.
const (
	DefaultJoinDeadline  = 10 * time.Second
	DefaultPingInterval  = time.Second
	DefaultPongWait      = 6 * time.Second
	DefaultWarmStartAge  = 100 * time.Millisecond
	DefaultMaxPerAddress = 32
	DefaultMaxSessions   = 2000
	DefaultMessageRate   = 20
	DefaultMessageBurst  = 50
	DefaultOpRate        = 5
	DefaultOpBurst       = 20
	DefaultFloodLimit    = 100
	DefaultResumeWait    = 10 * time.Second
)

// Stats are counters for /metrics.
type Stats struct {
	Channels, Users  int
	ForwardedPackets uint64
	ForwardedBytes   uint64
	// NACKResent: packets sent again on a subscriber's NACK from the track's cache;
	// NACKMissed: NACKed packets no longer (or never) in it.
	NACKResent, NACKMissed uint64
	// WarmStarts: subscribers started at once from the publisher's last keyframe, which the
	// hub still had (warmstart.go), instead of waiting for a new one.
	WarmStarts     uint64
	Joins, Refused uint64
	// ICERestarts counts ICE restarts, asked for by clients or started by the hub: media
	// paths that died while the signalling socket lived.
	ICERestarts uint64
	// Resumes counts sessions moved to a fresh signalling socket by their client (resume.go).
	Resumes uint64

	// Noise, mostly unauthenticated: Refused above counts refused joins.
	// RefusedConnections: sockets refused before the upgrade (per-address or total cap).
	RefusedConnections uint64
	// JoinTimeouts: sockets closed for not joining within JoinDeadline.
	JoinTimeouts uint64
	// BadMessages: messages that are not the protocol (garbage, too large, binary).
	BadMessages uint64
	// RateLimited: messages answered RATE_LIMITED; FloodClosed: sessions closed for flooding.
	RateLimited, FloodClosed uint64
	// RefusedMedia: offers refused for sending media the token does not allow, and tracks
	// stopped for it (publish) or because a subscribe connection must not carry any.
	RefusedMedia uint64
	// LogsSuppressed: log lines about noise held back by the per-address log limit.
	LogsSuppressed uint64
}

// Service runs the channels of every App.
type Service struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	upgrader websocket.Upgrader
	// noise limits the log lines about refused and misbehaving clients, per client address.
	noise *ratelog.Limiter

	mu       sync.Mutex
	channels map[channelKey]*channel
	giveBack *giveBack // counts users in and out (nil: off)

	connMu  sync.Mutex
	conns   int            // signalling sockets open
	perAddr map[string]int // of them, per client address

	resumeMu  sync.Mutex
	resumable map[string]*session // resume secret → its session (resume.go)

	forwardedPackets, forwardedBytes atomic.Uint64
	nackResent, nackMissed           atomic.Uint64
	warmStarts                       atomic.Uint64
	joins, refused                   atomic.Uint64
	iceRestarts, resumes             atomic.Uint64
	refusedConns, joinTimeouts       atomic.Uint64
	badMessages, rateLimited         atomic.Uint64
	floodClosed, refusedMedia        atomic.Uint64

	// skipOfferPrecheck (tests only) leaves a publish offer's privileges to the check after
	// SetRemoteDescription, to exercise it and the reset.
	skipOfferPrecheck atomic.Bool
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
	if o.Verify == nil && o.Certificate != nil {
		current := o.Certificate
		o.Verify = func(app, kid string) (string, bool) {
			cert, ok := current(app)
			if !ok {
				return "", false
			}
			return token.Match(kid, cert)
		}
	}
	if o.ClientAddr == nil {
		o.ClientAddr = remoteHost
	}
	setDefault(&o.JoinDeadline, DefaultJoinDeadline)
	setDefault(&o.PingInterval, DefaultPingInterval)
	setDefault(&o.PongWait, DefaultPongWait)
	setDefault(&o.MaxSilent, rtc.DefaultMaxSilent)
	setDefault(&o.ResumeWait, DefaultResumeWait)
	setDefault(&o.MaxPerAddress, DefaultMaxPerAddress)
	setDefault(&o.MaxSessions, DefaultMaxSessions)
	setDefault(&o.MessageRate, DefaultMessageRate)
	setDefault(&o.MessageBurst, DefaultMessageBurst)
	setDefault(&o.OpRate, DefaultOpRate)
	setDefault(&o.OpBurst, DefaultOpBurst)
	setDefault(&o.FloodLimit, DefaultFloodLimit)
	if o.WarmStartAge == 0 { // negative stays: no warm starts
		o.WarmStartAge = DefaultWarmStartAge
	}
	if o.GiveBackQuiet == 0 { // negative stays: never
		o.GiveBackQuiet = DefaultGiveBackQuiet
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := o.Logger.With("component", "sfu")
	return &Service{
		opts:      o,
		log:       log,
		giveBack:  newGiveBack(o.GiveBackQuiet, log),
		ctx:       ctx,
		cancel:    cancel,
		channels:  map[channelKey]*channel{},
		perAddr:   map[string]int{},
		resumable: map[string]*session{},
		// A few lines a second per client address about its noise.
		noise: ratelog.New(5, 250*time.Millisecond),
		upgrader: websocket.Upgrader{
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
			// The SDK may be loaded by any web app (as a cloud SDK is); tokens, not origins,
			// decide who joins.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// ServeHTTP upgrades the request to the signalling WebSocket and serves one user. Sockets
// over the per-address or total cap are refused before the upgrade.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr := s.opts.ClientAddr(r)
	if status := s.admit(addr); status != 0 {
		s.refusedConns.Add(1)
		s.noisy(slog.LevelWarn, addr, "signalling connection refused", "status", status)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many signalling connections", status)
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.release(addr)
		s.badMessages.Add(1)
		s.noisy(slog.LevelDebug, addr, "websocket upgrade failed", "err", err)
		return
	}
	if s.ctx.Err() != nil {
		s.release(addr)
		conn.Close()
		return
	}
	sess := newSession(s, conn, addr)
	sess.host = r.Host
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.release(addr)
		sess.run()
	}()
}

// admit counts a new signalling socket from addr, or returns the HTTP status refusing it.
func (s *Service) admit(addr string) int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch {
	case s.conns >= s.opts.MaxSessions:
		return http.StatusServiceUnavailable
	case s.perAddr[addr] >= s.opts.MaxPerAddress:
		return http.StatusTooManyRequests
	}
	s.conns++
	s.perAddr[addr]++
	return 0
}

func (s *Service) release(addr string) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.conns--
	if s.perAddr[addr]--; s.perAddr[addr] <= 0 {
		delete(s.perAddr, addr)
	}
}

// noisy logs a line about a client's noise within the per-address log limit.
func (s *Service) noisy(level slog.Level, addr, msg string, args ...any) {
	s.noise.Log(s.log, level, addr, msg, append(args, "remote", addr)...)
}

// Close ends every session and waits for them.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	s.giveBack.close()
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
	st.NACKResent, st.NACKMissed = s.nackResent.Load(), s.nackMissed.Load()
	st.WarmStarts = s.warmStarts.Load()
	st.Joins = s.joins.Load()
	st.Refused = s.refused.Load()
	st.ICERestarts, st.Resumes = s.iceRestarts.Load(), s.resumes.Load()
	st.RefusedConnections = s.refusedConns.Load()
	st.JoinTimeouts = s.joinTimeouts.Load()
	st.BadMessages = s.badMessages.Load()
	st.RateLimited = s.rateLimited.Load()
	st.FloodClosed = s.floodClosed.Load()
	st.RefusedMedia = s.refusedMedia.Load()
	st.LogsSuppressed = s.noise.Suppressed()
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
// replaces (same uid), if any. A uid held by a session (live, or kept for its reconnect) is
// taken over only when takeover is set (the token names that uid); otherwise enter refuses
// with UID_IN_USE and changes nothing.
func (s *Service) enter(key channelKey, uid uint32, sess *session, takeover bool) (*channel, *session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channels[key]
	if c == nil {
		c = &channel{key: key, users: map[uint32]*session{}}
		s.channels[key] = c
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.users[uid]
	if old != nil && !takeover {
		return nil, nil, rtc.Errorf(rtc.CodeUIDInUse, "uid %d is in use in this channel; only a token for uid %d may take it over", uid, uid)
	}
	c.users[uid] = sess
	if old == nil {
		s.giveBack.joined()
	}
	return c, old, nil
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
	s.giveBack.left()
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
