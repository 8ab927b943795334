// client.go: the channel client's type, dialling and life (Dial, Leave, Close). Its other concerns:
// client_signal.go (the socket, requests, join and renew), client_media.go (publish and
// subscribe: offers, answers, gathering, tracks) and client_restart.go (path watch, ICE restarts; the WebRTC core they share with the hub is rtc/peer).

package rtc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/rtc/peer"
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
	// PingInterval is how often the client pings the hub over the signalling socket (1 s);
	// ReadTimeout is how long that socket may stay silent — no message, ping or pong from
	// the hub — before the client ends (6 s: longer than a short network cut plus TCP's
	// retransmission back-off after it, so a 2 s cut does not tear a call down). Negative
	// PingInterval: no pings and no read deadline (liveness left to TCP).
	PingInterval time.Duration
	ReadTimeout  time.Duration
	// MaxSilent bounds how long a silent socket is kept while the media path still hears
	// the hub (DefaultMaxSilent, 20 s; liveness.go): only a socket silent for ReadTimeout
	// with the media silent too, or silent past MaxSilent, ends the client.
	MaxSilent time.Duration
	// OnConnected, if set, runs each time a peer connection (ConnPublish or ConnSubscribe)
	// becomes connected, at first and after a lost path came back: a publisher asks its
	// encoder for a keyframe there, since what it wrote before was dropped (no SRTP yet) and
	// the hub starts new viewers from the last keyframe it has. Not called with a negative
	// RestartAfter (no path watch).
	OnConnected func(conn string)
	// ConnectTimeout bounds the TCP connect of Dial (2 s): a SYN lost to a network still
	// down is retried on a fresh connect rather than by TCP's doubling SYN retransmissions,
	// so a rejoin connects within about a second of the path coming back.
	ConnectTimeout time.Duration
	// ResumeFor bounds how long a joined client tries to resume its session on a fresh
	// socket once its socket is lost (client_resume.go; 8 s). Negative: never resume (the
	// client ends with the socket, as clients without resume do).
	ResumeFor time.Duration
}

// Client is one user's connection to a hub: signalling plus the publish and subscribe peer
// connections. Events from the hub arrive on Events(); Done() closes when the connection ends.
type Client struct {
	opts ClientOptions
	log  *slog.Logger
	// url and dialer make the signalling socket (and a fresh one to resume on).
	url    string
	dialer *websocket.Dialer

	connMu sync.Mutex
	conn   *websocket.Conn // the signalling socket now: a resume replaces it (sock)

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
	paths    map[string]*peer.Path // ConnPublish/ConnSubscribe → its path watch (client_restart.go)
	// hubRestart is when the hub last sent an ICE-restart offer (unix nanoseconds): the hub
	// noticed a dead subscribe path first, so the client need not ask.
	hubRestart atomic.Int64
	// heard is when the hub last said anything on the signalling socket (unix nanoseconds);
	// holding is set while a silent socket is kept for a live media path.
	heard   atomic.Int64
	holding atomic.Bool
	// moved: the hub said the channel moved (EventChannelMoved); the socket's end is then
	// ErrChannelMoved.
	moved atomic.Bool

	// Resume (client_resume.go): the session's secret from the join reply (under mu), the
	// last hub message received, the messages sent that the hub may not have handled yet
	// (under outMu), one resume at a time, and how many succeeded.
	resumeTok string
	lastSeq   atomic.Uint64
	outMu     sync.Mutex
	outbox    []sentMessage
	resuming  atomic.Bool
	resumes   atomic.Uint64
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
	if o.ResumeFor == 0 {
		o.ResumeFor = DefaultResumeFor
	}
	o.setLivenessDefaults()
	url := HubWebSocketURL(o.URL)
	nd := &net.Dialer{Timeout: o.ConnectTimeout}
	d := &websocket.Dialer{HandshakeTimeout: o.RequestTimeout, Proxy: http.ProxyFromEnvironment, TLSClientConfig: o.TLS,
		NetDialContext: nd.DialContext}
	conn, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("rtc: connect to %s: %w", url, err)
	}
	cctx, cancel := context.WithCancelCause(context.Background())
	c := &Client{
		opts: o, log: o.Logger.With("component", "rtc"), url: url, dialer: d, conn: conn, ctx: cctx, cancel: cancel,
		events: make(chan *Message, 64), pending: map[uint64]chan *Message{},
		tracks: map[string]TrackInfo{}, arrived: map[TrackInfo]*webrtc.TrackRemote{},
		waiters: map[TrackInfo][]chan *webrtc.TrackRemote{}, offers: make(chan *Message, 16),
		live: map[string]chan struct{}{}, paths: map[string]*peer.Path{},
	}
	c.wg.Add(3)
	go c.readLoop()
	go c.offerLoop()
	go c.pingLoop()
	return c, nil
}

// Events delivers the hub's events (Type "event"). It is closed when the client ends.
func (c *Client) Events() <-chan *Message { return c.events }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.ctx.Done() }

// Err is why the client ended (nil while it runs).
func (c *Client) Err() error { return context.Cause(c.ctx) }

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

// Leave tells the hub the user quits, then closes everything.
func (c *Client) Leave(ctx context.Context) error {
	_, err := c.request(ctx, &Message{Type: TypeLeave})
	c.Close()
	return err
}

// Close ends the connection without a goodbye (the hub notices at once: the socket closes).
func (c *Client) Close() error {
	c.cancel(errors.New("rtc: client closed"))
	conn := c.sock()
	c.writeMu.Lock()
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	conn.Close()
	c.mu.Lock()
	pub, sub, paths := c.pub, c.sub, c.paths
	c.mu.Unlock()
	if pub != nil {
		pub.Close()
	}
	if sub != nil {
		sub.Close()
	}
	for _, p := range paths {
		p.Close() // waits for a restart in progress
	}
	c.wg.Wait()
	return nil
}
