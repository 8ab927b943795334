package broker

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxConnectSize bounds the first packet, read before anyone is
// authenticated: a CONNECT carries a client id, a user name, a password and a
// will (a device's is "offline"), never kilobytes.
const maxConnectSize = 16 << 10

// Stats counts what the broker refused, for the hub's /metrics.
type Stats struct {
	RefusedAuth   uint64 // CONNECTs with bad or missing credentials
	RefusedACL    uint64 // subscriptions, publishes, wills and client-id takeovers outside an identity's rules
	Oversize      uint64 // connections closed for a packet over the limit (a CONNECT over 16 KiB, any packet over MaxPacketSize)
	Timeouts      uint64 // sockets that did not complete CONNECT within ConnectTimeout
	RefusedLimit  uint64 // sockets closed at accept: MaxClients or MaxPerAddress reached
	RefusedOrigin uint64 // WebSocket upgrades refused for their Origin
}

type stats struct {
	refusedAuth, refusedACL, oversize, timeouts, refusedLimit, refusedOrigin atomic.Uint64
}

// Stats returns the counters since New.
func (b *Broker) Stats() Stats {
	return Stats{
		RefusedAuth:   b.stats.refusedAuth.Load(),
		RefusedACL:    b.stats.refusedACL.Load(),
		Oversize:      b.stats.oversize.Load(),
		Timeouts:      b.stats.timeouts.Load(),
		RefusedLimit:  b.stats.refusedLimit.Load(),
		RefusedOrigin: b.stats.refusedOrigin.Load(),
	}
}

var (
	errConnectTooLarge = errors.New("broker: first packet larger than a CONNECT may be")
	errNotConnect      = errors.New("broker: first packet is not a CONNECT")
)

// mqttConn is the byte stream mochi reads one client from (a TCP
// connection or a WebSocket's messages). It checks the first packet's fixed
// header before mochi sees it, since mochi allocates a packet's whole body as
// announced, and carries the client's session once authenticated.
type mqttConn struct {
	net.Conn
	sess atomic.Pointer[session]

	// The first fixed header, parsed as it streams in (only mochi's reading
	// goroutine calls Read).
	first     bool // done with the first header
	hdrBytes  int
	remaining int
	shift     uint
}

func (c *mqttConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.first {
		for _, x := range p[:n] {
			if e := c.header(x); e != nil {
				return 0, e
			}
			if c.first {
				break
			}
		}
	}
	return n, err
}

// header takes one byte of the first fixed header: the type, then the
// remaining length (MQTT's variable byte integer, at most 4 bytes).
func (c *mqttConn) header(x byte) error {
	c.hdrBytes++
	if c.hdrBytes == 1 {
		if x>>4 != packets.Connect {
			return errNotConnect
		}
		return nil
	}
	c.remaining |= int(x&0x7f) << c.shift
	c.shift += 7
	if c.remaining > maxConnectSize || (x&0x80 != 0 && c.hdrBytes == 5) {
		return errConnectTooLarge
	}
	if x&0x80 == 0 {
		c.first = true
	}
	return nil
}

// serve hands one accepted stream to mochi: a deadline for CONNECT, then
// mochi's own reading until the client leaves; the way it ended is counted.
func (b *Broker) serve(listener string, establish listeners.EstablishFn, raw net.Conn) error {
	c := &mqttConn{Conn: raw}
	// mochi sets its own keep-alive deadline once the CONNECT is valid.
	_ = raw.SetDeadline(time.Now().Add(b.opts.ConnectTimeout))
	err := establish(listener, c)
	switch {
	case err == nil:
	case errors.Is(err, errConnectTooLarge) || errors.Is(err, packets.ErrPacketTooLarge):
		b.stats.oversize.Add(1)
		args := []any{"remote", raw.RemoteAddr().String()}
		if s := c.sess.Load(); s != nil {
			args = append(args, "kind", s.id.Kind, "identity", s.id.Name)
		}
		b.preAuthLog("closed an MQTT connection: packet too large", args...)
	case c.sess.Load() == nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.stats.timeouts.Add(1)
		b.preAuthLog("closed an MQTT connection: no CONNECT in time", "remote", raw.RemoteAddr().String(), "timeout", b.opts.ConnectTimeout)
	}
	return err
}

// limiter caps open sockets in total and per remote address.
type limiter struct {
	max, perAddr int

	mu    sync.Mutex
	total int
	per   map[string]int
}

func newLimiter(max, perAddr int) *limiter {
	return &limiter{max: max, perAddr: perAddr, per: make(map[string]int)}
}

// acquire takes a slot for a socket from addr; release gives it back.
func (l *limiter) acquire(addr net.Addr) (release func(), ok bool) {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.per[host] >= l.perAddr {
		return nil, false
	}
	l.total++
	l.per[host]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.per[host]--; l.per[host] == 0 {
				delete(l.per, host)
			}
		})
	}, true
}

// limitListener closes, at accept, sockets over the broker's limits.
type limitListener struct {
	net.Listener
	b *Broker
}

func (l limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.b.limits.acquire(c.RemoteAddr())
		if !ok {
			l.b.stats.refusedLimit.Add(1)
			l.b.preAuthLog("refused an MQTT connection: too many connections", "remote", c.RemoteAddr().String(),
				"maxClients", l.b.opts.MaxClients, "maxPerAddress", l.b.opts.MaxPerAddress)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: release}, nil
	}
}

// countedConn gives its limiter slot back when closed.
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
