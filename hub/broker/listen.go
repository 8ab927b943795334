package broker

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// tracker keeps a listener's connections and the goroutines serving them,
// so that closing the listener ends them all before the broker's Run returns
// (mochi's own listeners may still be logging after Close).
type tracker struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// add registers c and its goroutine; after closeAll it closes c instead and
// returns false.
func (t *tracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// done closes c and marks its goroutine finished.
func (t *tracker) done(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
	t.wg.Done()
}

// closeAll closes every connection and waits for their goroutines.
func (t *tracker) closeAll() {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// tcpListener serves MQTT on a listener we opened ourselves, so that port 0
// works and the bound address is known.
type tcpListener struct {
	id    string
	ln    net.Listener
	b     *Broker
	log   *slog.Logger
	track tracker
}

var _ listeners.Listener = (*tcpListener)(nil)

func newTCPListener(id string, ln net.Listener, b *Broker) *tcpListener {
	return &tcpListener{id: id, ln: limitListener{Listener: ln, b: b}, b: b}
}

func (l *tcpListener) ID() string                  { return l.id }
func (l *tcpListener) Address() string             { return l.ln.Addr().String() }
func (l *tcpListener) Protocol() string            { return "tcp" }
func (l *tcpListener) Init(log *slog.Logger) error { l.log = log; return nil }

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return // closed
		}
		if !l.track.add(c) {
			continue
		}
		go func() {
			defer l.track.done(c)
			if err := l.b.serve(l.id, establish, c); err != nil {
				l.log.Debug("client connection ended", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (l *tcpListener) Close(listeners.CloseFn) {
	l.ln.Close()
	disconnectListener(l.b, l.id)
	l.track.closeAll()
}

// disconnectListener disconnects the clients of listener id as the server shuts down. It
// stands in for mochi's own CloseFn (closeListenerClients), whose Clients.GetByListener
// read-locks the client table twice: a client that disconnects between the two (Delete's
// write lock waiting) deadlocks the shutdown, as CI saw once (a hub's Run hung 20 minutes).
// GetAll read-locks it once.
func disconnectListener(b *Broker, id string) {
	srv := b.server()
	if srv == nil {
		return
	}
	for _, cl := range srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
