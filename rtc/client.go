package rtc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/internal/backoff"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// ClientOptions configure a channel client.
type ClientOptions struct {
	// URL of the hub's signalling endpoint, e.g. ws://127.0.0.1:8080/rtc. An http(s):// hub
	// address is accepted too and turned into ws(s)://…/rtc.
	URL    string
	API    *webrtc.API
	Logger *slog.Logger
	// RequestTimeout bounds each request (10 s).
	RequestTimeout time.Duration
	// GatherTimeout bounds the wait for ICE candidates before an offer or answer is sent
	// (3 s): a TURN server that a firewall hides (UDP dropped) takes pion ~25 s to give up on,
	// while the other transports' candidates are there in milliseconds. Once a relay
	// candidate is there the wait ends half a second later anyway.
	GatherTimeout time.Duration
	// RestartAfter is how long a peer connection's ICE may stay disconnected before the
	// client restarts ICE over the signalling socket (1 s; a failed connection restarts at
	// once). Negative: never restart (the connection ends when the hub gives up on it).
	RestartAfter time.Duration
	// TLS configures wss:// (nil: the system's roots).
	TLS *tls.Config
}

// Restart back-off: the first retry of a restart that did not bring the path back waits
// up to restartRetryMin, doubling to restartRetryMax, jittered (internal/backoff).
const (
	restartRetryMin = 5 * time.Second
	restartRetryMax = 30 * time.Second
)

// Client is one user's connection to a hub: signalling plus the publish and subscribe peer
// connections. Events from the hub arrive on Events(); Done() closes when the connection ends.
type Client struct {
	opts ClientOptions
	log  *slog.Logger
	conn *websocket.Conn

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	writeMu sync.Mutex
	events  chan *Message

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *Message
	pub     *webrtc.PeerConnection
	sub     *webrtc.PeerConnection
	tracks  map[string]TrackInfo // mid → whose track, from the hub's offers
	arrived map[TrackInfo]*webrtc.TrackRemote
	waiters map[TrackInfo][]chan *webrtc.TrackRemote
	offers  chan *Message
	live    map[string]chan struct{} // kind → closed when the hub says our track is live
	ice     []webrtc.ICEServer       // from the join reply (and fresher ones from restarts)

	pubMu    sync.Mutex // one publish negotiation at a time (Publish, ICE restarts)
	restarts atomic.Uint64
	kick     chan string // a connection the hub says lost its media path
	// hubRestart is when the hub last sent an ICE-restart offer (unix nanoseconds): the hub
	// noticed a dead subscribe path first, so the client need not ask.
	hubRestart atomic.Int64
}

// HubWebSocketURL turns a hub address (http://host:port) into its signalling URL.
func HubWebSocketURL(hub string) string {
	switch {
	case len(hub) > 7 && hub[:7] == "http://":
		return "ws://" + trimSlash(hub[7:]) + "/rtc"
	case len(hub) > 8 && hub[:8] == "https://":
		return "wss://" + trimSlash(hub[8:]) + "/rtc"
	}
	return hub
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// Dial opens the signalling connection. The client lives until Close, Leave, or the hub ends it.
func Dial(ctx context.Context, o ClientOptions) (*Client, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.GatherTimeout == 0 {
		o.GatherTimeout = 3 * time.Second
	}
	if o.RestartAfter == 0 {
		o.RestartAfter = time.Second
	}
	if o.API == nil {
		return nil, errors.New("rtc: no webrtc API")
	}
	url := HubWebSocketURL(o.URL)
	d := websocket.Dialer{HandshakeTimeout: o.RequestTimeout, Proxy: http.ProxyFromEnvironment, TLSClientConfig: o.TLS}
	conn, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("rtc: connect to %s: %w", url, err)
	}
	cctx, cancel := context.WithCancelCause(context.Background())
	c := &Client{
		opts: o, log: o.Logger.With("component", "rtc"), conn: conn, ctx: cctx, cancel: cancel,
		events: make(chan *Message, 64), pending: map[uint64]chan *Message{},
		tracks: map[string]TrackInfo{}, arrived: map[TrackInfo]*webrtc.TrackRemote{},
		waiters: map[TrackInfo][]chan *webrtc.TrackRemote{}, offers: make(chan *Message, 16),
		live: map[string]chan struct{}{}, kick: make(chan string, 2),
	}
	c.wg.Add(3)
	go c.readLoop()
	go c.offerLoop()
	go c.watchPaths()
	return c, nil
}

// Events delivers the hub's events (Type "event"). It is closed when the client ends.
func (c *Client) Events() <-chan *Message { return c.events }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.ctx.Done() }

// Err is why the client ended (nil while it runs).
func (c *Client) Err() error { return context.Cause(c.ctx) }

func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.events)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.cancel(fmt.Errorf("rtc: signalling connection closed: %w", err))
			return
		}
		var m Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.log.Warn("hub sent a message that is not JSON", "err", err)
			continue
		}
		switch m.Type {
		case TypeReply:
			c.mu.Lock()
			ch := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- &m
			} else if m.Error != nil {
				c.log.Warn("hub reported an error", "code", m.Error.Code, "msg", m.Error.Message)
			}
		case TypeOffer:
			select {
			case c.offers <- &m:
			case <-c.ctx.Done():
				return
			}
		case TypeEvent:
			if m.Event == EventRestartICE {
				select {
				case c.kick <- m.Connection:
				default:
				}
				continue
			}
			if m.Event == EventPublished {
				c.mu.Lock()
				if ch := c.live[m.Kind]; ch != nil {
					close(ch)
					delete(c.live, m.Kind)
				}
				c.mu.Unlock()
				continue
			}
			select {
			case c.events <- &m:
			default:
				c.log.Warn("event dropped: nobody reads events", "event", m.Event)
			}
		}
	}
}

// offerLoop answers the hub's offers for the subscribe connection, one at a time.
func (c *Client) offerLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case m := <-c.offers:
			if err := c.answerOffer(m); err != nil {
				c.log.Error("answer hub offer", "err", err)
			}
		}
	}
}

func (c *Client) answerOffer(m *Message) error {
	c.mu.Lock()
	pc := c.sub
	for mid, ti := range m.Tracks {
		c.tracks[mid] = ti
	}
	c.mu.Unlock()
	if len(m.ICEServers) > 0 { // an ICE restart: gather with the fresh credentials
		c.hubRestart.Store(time.Now().UnixNano())
		c.setICEServers(m.ICEServers)
		if pc != nil {
			if err := c.refreshConfiguration(pc); err != nil {
				return err
			}
		}
	}
	if pc == nil {
		var err error
		if pc, err = c.opts.API.NewPeerConnection(c.configuration()); err != nil {
			return fmt.Errorf("rtc: subscribe connection: %w", err)
		}
		pc.OnTrack(c.onTrack)
		c.mu.Lock()
		c.sub = pc
		c.mu.Unlock()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		return fmt.Errorf("rtc: apply hub offer: %w", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("rtc: create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("rtc: set answer: %w", err)
	}
	if err := c.gather(c.ctx, pc, gathered); err != nil {
		return err
	}
	return c.write(&Message{Type: TypeAnswer, SDP: pc.LocalDescription().SDP})
}

// relayGrace is how long gathering may go on once a relay candidate is there.
const relayGrace = 500 * time.Millisecond

// gather waits until ICE gathering is complete (done), but not for long: a TURN transport
// that a firewall silently drops (UDP to 3478) takes pion about 25 s to give up on, while
// the others are there in milliseconds. So it also returns relayGrace after the first relay
// candidate (the path of last resort is in hand), or at GatherTimeout with what there is.
func (c *Client) gather(ctx context.Context, pc *webrtc.PeerConnection, done <-chan struct{}) error {
	timeout := time.NewTimer(c.opts.GatherTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var relayAt time.Time
	for {
		select {
		case <-done:
			return nil
		case <-timeout.C:
			c.log.Warn("ICE gathering incomplete; going on with the candidates gathered so far", "after", c.opts.GatherTimeout)
			return nil
		case now := <-tick.C:
			if relayAt.IsZero() {
				if d := pc.LocalDescription(); d != nil && strings.Contains(d.SDP, " typ relay") {
					relayAt = now
				}
			} else if now.Sub(relayAt) >= relayGrace {
				c.log.Info("ICE gathering: going on with a relay candidate, not waiting for the rest", "after", relayGrace)
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Client) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	var mid string
	c.mu.Lock()
	if c.sub != nil {
		for _, tr := range c.sub.GetTransceivers() {
			if tr.Receiver() == r {
				mid = tr.Mid()
			}
		}
	}
	ti, ok := c.tracks[mid]
	if !ok {
		c.mu.Unlock()
		c.log.Warn("track on unknown transceiver", "mid", mid)
		return
	}
	c.arrived[ti] = t
	waiters := c.waiters[ti]
	delete(c.waiters, ti)
	c.mu.Unlock()
	for _, w := range waiters {
		w <- t
	}
}

func (c *Client) write(m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(c.opts.RequestTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("rtc: send %s: %w", m.Type, err)
	}
	return nil
}

// request sends m and waits for its reply; a refused request returns the hub's *Error.
func (c *Client) request(ctx context.Context, m *Message) (*Message, error) {
	ch := make(chan *Message, 1)
	c.mu.Lock()
	c.nextID++
	m.ID = c.nextID
	c.pending[m.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
	}()
	if err := c.write(m); err != nil {
		return nil, err
	}
	timer := time.NewTimer(c.opts.RequestTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.OK == nil || !*r.OK {
			if r.Error == nil {
				r.Error = Errorf(CodeInternal, "request refused without a reason")
			}
			return r, r.Error
		}
		return r, nil
	case <-timer.C:
		return nil, fmt.Errorf("rtc: %s: no reply from hub in %s", m.Type, c.opts.RequestTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, context.Cause(c.ctx)
	}
}

// JoinResult is what the hub says on a successful join.
type JoinResult struct {
	UID       uint32
	Users     []User
	ExpiresAt time.Time
	// ICEServers are the STUN/TURN servers the hub handed out (with their credentials).
	ICEServers []ICEServer
}

// Join enters a channel. uid 0 asks the hub to assign one.
func (c *Client) Join(ctx context.Context, appID, channel string, uid uint32, tok string) (*JoinResult, error) {
	m := &Message{Type: TypeJoin, AppID: appID, Channel: channel, Token: tok}
	if uid != 0 {
		m.UID = &uid
	}
	r, err := c.request(ctx, m)
	if err != nil {
		return nil, err
	}
	res := &JoinResult{Users: r.Users, ExpiresAt: time.Unix(r.ExpiresAt, 0), ICEServers: r.ICEServers}
	if r.UID != nil {
		res.UID = *r.UID
	}
	c.setICEServers(r.ICEServers)
	return res, nil
}

// setICEServers keeps the ICE servers the hub handed out for the peer connections.
func (c *Client) setICEServers(servers []ICEServer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ice = c.ice[:0]
	for _, s := range servers {
		c.ice = append(c.ice, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
}

// refreshConfiguration gives an existing peer connection the latest ICE servers (their
// credentials are short-lived), for its next gathering.
func (c *Client) refreshConfiguration(pc *webrtc.PeerConnection) error {
	cfg := pc.GetConfiguration()
	cfg.ICEServers = c.configuration().ICEServers
	if err := pc.SetConfiguration(cfg); err != nil {
		return fmt.Errorf("rtc: update ICE servers: %w", err)
	}
	return nil
}

// configuration is the peer connections' configuration: the ICE servers the hub gave.
func (c *Client) configuration() webrtc.Configuration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return webrtc.Configuration{ICEServers: append([]webrtc.ICEServer(nil), c.ice...)}
}

// Publish sends tracks on the publish connection and returns their senders, whose RTCP the
// caller must read (keyframe requests arrive there). It returns once the hub has announced
// every track to the channel, which happens when its media arrives: write samples to the
// tracks before or while calling Publish.
func (c *Client) Publish(ctx context.Context, tracks ...webrtc.TrackLocal) ([]*webrtc.RTPSender, error) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	pc := c.pub
	c.mu.Unlock()
	if pc == nil {
		var err error
		if pc, err = c.opts.API.NewPeerConnection(c.configuration()); err != nil {
			return nil, fmt.Errorf("rtc: publish connection: %w", err)
		}
		c.mu.Lock()
		c.pub = pc
		c.mu.Unlock()
	}
	var senders []*webrtc.RTPSender
	var live []chan struct{}
	for _, t := range tracks {
		ch := make(chan struct{})
		c.mu.Lock()
		c.live[t.Kind().String()] = ch
		c.mu.Unlock()
		live = append(live, ch)
	}
	for _, t := range tracks {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, fmt.Errorf("rtc: add %s track: %w", t.Kind(), err)
		}
		senders = append(senders, tr.Sender())
	}
	if err := c.negotiatePublish(ctx, pc, nil); err != nil {
		return nil, err
	}
	// Return once the others can subscribe: the hub announces a track when its media arrives,
	// so the caller must already be writing samples to the tracks.
	timer := time.NewTimer(c.opts.RequestTimeout)
	defer timer.Stop()
	for i, ch := range live {
		select {
		case <-ch:
		case <-timer.C:
			return senders, fmt.Errorf("rtc: publish: the hub received no %s media in %s", tracks[i].Kind(), c.opts.RequestTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, context.Cause(c.ctx)
		}
	}
	return senders, nil
}

// negotiatePublish offers the publish connection's current tracks to the hub and applies its
// answer. The caller holds pubMu.
func (c *Client) negotiatePublish(ctx context.Context, pc *webrtc.PeerConnection, opts *webrtc.OfferOptions) error {
	offer, err := pc.CreateOffer(opts)
	if err != nil {
		return fmt.Errorf("rtc: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("rtc: set offer: %w", err)
	}
	if err := c.gather(ctx, pc, gathered); err != nil {
		return err
	}
	r, err := c.request(ctx, &Message{Type: TypePublish, SDP: pc.LocalDescription().SDP})
	if err != nil {
		return err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.SDP}); err != nil {
		return fmt.Errorf("rtc: apply hub answer: %w", err)
	}
	return nil
}

// ICERestarts counts the ICE restarts this client asked for.
func (c *Client) ICERestarts() uint64 { return c.restarts.Load() }

// pathWatch is what watchPaths knows about one peer connection's media path.
type pathWatch struct {
	lostAt      time.Time // when ICE went disconnected or failed; zero while the path is up
	lastRestart time.Time
	retry       time.Duration // how long after lastRestart to restart again
	bo          backoff.Backoff
}

// watchPaths restarts ICE on a peer connection whose media path died while the signalling
// socket lives on: disconnected for RestartAfter, or failed. A restart that does not bring
// the path back is retried with back-off until it does or the client ends.
func (c *Client) watchPaths() {
	defer c.wg.Done()
	if c.opts.RestartAfter < 0 {
		return
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	watches := map[string]*pathWatch{ConnPublish: {}, ConnSubscribe: {}}
	for {
		kicked := ""
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		case kicked = <-c.kick:
		}
		for _, which := range []string{ConnPublish, ConnSubscribe} {
			c.mu.Lock()
			pc := c.pub
			if which == ConnSubscribe {
				pc = c.sub
			}
			c.mu.Unlock()
			if pc == nil {
				continue
			}
			w, now := watches[which], time.Now()
			st := pc.ICEConnectionState()
			if kicked == which && w.lostAt.IsZero() {
				// The hub lost this path though ours looks fine (say, only our uplink died).
				c.log.Warn("media path lost at the hub", "connection", which, "ice", st.String())
				w.lostAt = now
				st = webrtc.ICEConnectionStateFailed
			}
			switch st {
			case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
				if !w.lostAt.IsZero() {
					c.log.Info("media path restored", "connection", which, "after", now.Sub(w.lostAt).Round(time.Millisecond))
				}
				*w = pathWatch{}
				continue
			case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
				if w.lostAt.IsZero() {
					w.lostAt = now
					c.log.Warn("media path lost", "connection", which, "ice", st.String())
				}
			case webrtc.ICEConnectionStateClosed:
				continue
			}
			if w.lostAt.IsZero() {
				continue // new or checking, not yet connected: the first connection is on its way
			}
			if w.lastRestart.IsZero() {
				if st != webrtc.ICEConnectionStateFailed && now.Sub(w.lostAt) < c.opts.RestartAfter {
					continue
				}
			} else if now.Sub(w.lastRestart) < w.retry {
				continue
			}
			w.lastRestart = now
			w.bo.First, w.bo.Max = restartRetryMin, restartRetryMax
			w.retry = w.bo.Next()
			if which == ConnSubscribe && time.Unix(0, c.hubRestart.Load()).After(w.lostAt.Add(-time.Second)) && w.bo.Failures() == 1 {
				// The hub is restarting this connection already; asking again would reset
				// a path it may just have found. Retry later if that one does not work.
				c.log.Info("the hub is restarting ICE", "connection", which)
				continue
			}
			if err := c.restartICE(which); err != nil && c.ctx.Err() == nil {
				c.log.Warn("ICE restart failed", "connection", which, "err", err, "retry in", w.retry)
			}
		}
	}
}

// restartICE restarts ICE on one peer connection with fresh credentials and ICE servers.
func (c *Client) restartICE(which string) error {
	c.restarts.Add(1)
	c.log.Info("restarting ICE", "connection", which)
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.RequestTimeout)
	defer cancel()
	r, err := c.request(ctx, &Message{Type: TypeRestart, Connection: which})
	if err != nil {
		return err
	}
	if which == ConnSubscribe {
		return nil // the hub's ICE-restart offer follows, with its ICE servers
	}
	c.setICEServers(r.ICEServers)
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	pc := c.pub
	c.mu.Unlock()
	if err := c.refreshConfiguration(pc); err != nil {
		return err
	}
	return c.negotiatePublish(ctx, pc, &webrtc.OfferOptions{ICERestart: true})
}

// PublishConnection returns the publish peer connection (nil before Publish), for stats.
func (c *Client) PublishConnection() *webrtc.PeerConnection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pub
}

// SubscribeConnection returns the subscribe peer connection (nil before the hub's first
// offer), for stats.
func (c *Client) SubscribeConnection() *webrtc.PeerConnection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sub
}

// Subscribe asks for uid's track of kind and returns it once its media arrives.
func (c *Client) Subscribe(ctx context.Context, uid uint32, kind string) (*webrtc.TrackRemote, error) {
	ti := TrackInfo{UID: uid, Kind: kind}
	w := make(chan *webrtc.TrackRemote, 1)
	c.mu.Lock()
	delete(c.arrived, ti)
	c.waiters[ti] = append(c.waiters[ti], w)
	c.mu.Unlock()
	if _, err := c.request(ctx, &Message{Type: TypeSubscribe, UID: &uid, Kind: kind}); err != nil {
		return nil, err
	}
	timer := time.NewTimer(c.opts.RequestTimeout)
	defer timer.Stop()
	select {
	case t := <-w:
		return t, nil
	case <-timer.C:
		return nil, fmt.Errorf("rtc: subscribe %d/%s: no media in %s", uid, kind, c.opts.RequestTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, context.Cause(c.ctx)
	}
}

// Unsubscribe stops receiving uid's track of kind.
func (c *Client) Unsubscribe(ctx context.Context, uid uint32, kind string) error {
	_, err := c.request(ctx, &Message{Type: TypeUnsubscribe, UID: &uid, Kind: kind})
	return err
}

// RenewToken extends the session with a new token.
func (c *Client) RenewToken(ctx context.Context, tok string) (time.Time, error) {
	r, err := c.request(ctx, &Message{Type: TypeRenew, Token: tok})
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(r.ExpiresAt, 0), nil
}

// Leave tells the hub the user quits, then closes everything.
func (c *Client) Leave(ctx context.Context) error {
	_, err := c.request(ctx, &Message{Type: TypeLeave})
	c.Close()
	return err
}

// Close ends the connection without a goodbye (the hub notices at once: the socket closes).
func (c *Client) Close() error {
	c.cancel(errors.New("rtc: client closed"))
	c.writeMu.Lock()
	c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	c.conn.Close()
	c.mu.Lock()
	pub, sub := c.pub, c.sub
	c.mu.Unlock()
	if pub != nil {
		pub.Close()
	}
	if sub != nil {
		sub.Close()
	}
	c.wg.Wait()
	return nil
}
