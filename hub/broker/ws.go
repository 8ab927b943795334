package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket on a listener we opened ourselves, so
// that the bound address is known (mochi's own WebSocket listener only takes
// an address string).
type wsListener struct {
	id  string
	ln  net.Listener
	b   *Broker
	srv *http.Server
	log *slog.Logger

	establish listeners.EstablishFn // set by Serve before srv starts
	track     tracker
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(id string, ln net.Listener, b *Broker) *wsListener {
	l := &wsListener{id: id, ln: limitListener{Listener: ln, b: b}, b: b}
	up := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// The handler has checked the Origin already.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	l.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A browser says where the page came from: any web page the owner
			// opens could otherwise talk MQTT from the owner's machine.
			if origin := r.Header.Get("Origin"); origin != "" && !originAllowed(origin, b.opts.AllowedOrigins) {
				b.stats.refusedOrigin.Add(1)
				b.preAuthLog("refused an MQTT WebSocket: Origin not allowed", "origin", printable(origin), "remote", r.RemoteAddr)
				http.Error(w, "broker: Origin not allowed", http.StatusForbidden)
				return
			}
			ws, err := up.Upgrade(w, r, nil)
			if err != nil {
				return // Upgrade has answered the request.
			}
			conn := &wsConn{Conn: ws.NetConn(), ws: ws}
			if !l.track.add(conn) {
				return
			}
			defer l.track.done(conn)
			if err := b.serve(l.id, l.establish, conn); err != nil {
				l.log.Debug("websocket client ended", "remote", r.RemoteAddr, "err", err)
			}
		}),
	}
	return l
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	l.srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener failed", "err", err)
	}
}

func (l *wsListener) Close(listeners.CloseFn) {
	// Close, not Shutdown: upgraded connections are hijacked, so the server
	// no longer knows them; disconnectListener and the tracker end them.
	_ = l.srv.Close()
	disconnectListener(l.b, l.id)
	l.track.closeAll()
}

// originAllowed reports whether origin is one of allowed (compared without
// regard to case, as scheme and host are).
func originAllowed(origin string, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	return false
}

// wsConn carries an MQTT byte stream in binary WebSocket messages.
type wsConn struct {
	net.Conn // the underlying connection: addresses, deadlines, Close
	ws       *websocket.Conn

	r  io.Reader // the message being read, nil between messages
	mu sync.Mutex
}

var errTextMessage = errors.New("broker: websocket text message, MQTT needs binary")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errTextMessage
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue // an empty or finished message: read the next one
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
