package turn

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pturn "github.com/pion/turn/v5"
)

// The embedded server's relays exist for one purpose: letting a client that cannot reach the
// hub's media port directly reach it through the TURN port. So a relay may send only to the
// hub's own media addresses (and, when the hub has one media port, only to that port); every
// other peer — the LAN behind the hub, the hub's other services, the Internet — is refused.

// Default allocation quotas.
const (
	DefaultUserQuota  = 8
	DefaultTotalQuota = 512
)

// Errors of the relay address generator (answered to the client as a failed allocation).
var (
	ErrQuota    = errors.New("turn: allocation quota reached")
	ErrTCPRelay = errors.New("turn: TCP relays (RFC 6062) are not offered")
)

// Stats count what the server refused since it started.
type Stats struct {
	// Allocations is the number of live relay allocations.
	Allocations int
	// RefusedAuth: requests with a malformed, expired or wrong credential.
	RefusedAuth uint64
	// RefusedPeers: permissions and channel bindings for an address that is not the hub's.
	RefusedPeers uint64
	// RefusedPackets: relayed packets dropped because their port is not the hub's media port.
	RefusedPackets uint64
	// RefusedQuota: allocations over a credential's or the server's quota.
	RefusedQuota uint64
	// RefusedTCP: TCP relay allocations (RFC 6062), which a client of the hub never needs.
	RefusedTCP uint64
}

type counters struct {
	auth, peers, packets, quota, tcp atomic.Uint64
}

// peerFilter decides which peers relays may talk to.
type peerFilter struct {
	ips  func() []net.IP
	port int // 0: any port of ips
	now  func() time.Time

	mu     sync.Mutex
	set    map[netip.Addr]bool
	expiry time.Time
}

// refreshEvery bounds how stale the cached media addresses may be (interface addresses change
// with DHCP; a permission is asked for once per peer and 5 minutes).
const refreshEvery = 5 * time.Second

func (f *peerFilter) allowedIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); f.set == nil || !now.Before(f.expiry) {
		f.set = map[netip.Addr]bool{}
		for _, ip := range f.ips() {
			if a, ok := netip.AddrFromSlice(ip); ok {
				f.set[a.Unmap()] = true
			}
		}
		f.expiry = now.Add(refreshEvery)
	}
	return f.set[a]
}

func (f *peerFilter) allowedPort(addr net.Addr) bool {
	if f.port == 0 {
		return true
	}
	u, ok := addr.(*net.UDPAddr)
	return ok && u.Port == f.port
}

// quota counts live allocations per user and in total.
type quota struct {
	perUser, total int

	mu    sync.Mutex
	users map[string]int
	all   int
}

// ok reports whether user may have one more allocation.
func (q *quota) ok(user string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.users[user] < q.perUser && q.all < q.total
}

// take reserves an allocation for user, unless over quota.
func (q *quota) take(user string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.users[user] >= q.perUser || q.all >= q.total {
		return false
	}
	q.users[user]++
	q.all++
	return true
}

func (q *quota) release(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.users[user]--; q.users[user] <= 0 {
		delete(q.users, user)
	}
	q.all--
}

// relayGenerator wraps pion's generator: it reserves quota for each UDP relay, returns the
// relay socket wrapped in the port filter, and offers no TCP relays.
type relayGenerator struct {
	pturn.RelayAddressGenerator
	s *Server
}

func (g relayGenerator) AllocatePacketConn(c pturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if !g.s.quota.take(c.UserID) {
		g.s.refuseQuota(c.UserID)
		return nil, nil, ErrQuota
	}
	conn, addr, err := g.RelayAddressGenerator.AllocatePacketConn(c)
	if err != nil {
		g.s.quota.release(c.UserID)
		return nil, nil, err
	}
	return &relayConn{PacketConn: conn, s: g.s, user: c.UserID}, addr, nil
}

func (g relayGenerator) AllocateListener(c pturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	g.s.count.tcp.Add(1)
	g.s.warn("TCP relay refused", "user", c.UserID)
	return nil, nil, ErrTCPRelay
}

func (g relayGenerator) AllocateConn(c pturn.AllocateConnConfig) (net.Conn, error) {
	g.s.count.tcp.Add(1)
	return nil, ErrTCPRelay
}

// relayConn is a relay socket that exchanges packets only with the hub's media port.
type relayConn struct {
	net.PacketConn
	s    *Server
	user string
	once sync.Once
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.s.peers.allowedPort(addr) {
		c.s.count.packets.Add(1)
		c.s.warn("TURN relay packet dropped: not the hub's media port", "user", c.user, "peer", addr.String())
		return len(p), nil // dropped like a lost datagram; an error would make pion log each one
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || c.s.peers.allowedPort(addr) {
			return n, addr, err
		}
		c.s.count.packets.Add(1)
	}
}

func (c *relayConn) Close() error {
	c.once.Do(func() { c.s.quota.release(c.user) })
	return c.PacketConn.Close()
}

// limiter lets one event through per interval and counts the ones it held back.
type limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	next time.Time
	held int
}

func (l *limiter) allow() (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Before(l.next) {
		l.held++
		return false, 0
	}
	held, l.held, l.next = l.held, 0, now.Add(l.every)
	return true, held
}

// warn logs a refusal, at most once a second (a client can make refusals as fast as it sends).
func (s *Server) warn(msg string, args ...any) {
	if ok, held := s.limit.allow(); ok {
		if held > 0 {
			args = append(args, "suppressed", held)
		}
		s.log.Warn(msg, args...)
	}
}

func (s *Server) refuseQuota(user string) {
	s.count.quota.Add(1)
	s.warn("TURN allocation refused: quota reached", "user", user,
		"userQuota", s.quota.perUser, "totalQuota", s.quota.total)
}

// users maps a client's transport address to the username of its allocation, for logs.
type users struct {
	mu sync.Mutex
	m  map[string]string
}

func addrKey(a net.Addr) string { return a.Network() + " " + a.String() }

func (u *users) set(a net.Addr, name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.m[addrKey(a)] = name
}

func (u *users) del(a net.Addr) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, addrKey(a))
}

func (u *users) get(a net.Addr) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.m[addrKey(a)]
}

// permit is the permission handler of every listener: CreatePermission and ChannelBind are
// granted for the hub's media addresses only.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	if s.peers.allowedIP(peer) {
		return true
	}
	s.count.peers.Add(1)
	s.warn("TURN permission refused: not a media address of the hub", "user", s.users.get(client),
		"remote", client.String(), "peer", peer.String())
	return false
}

// Stats returns the live allocation count and the refusals so far.
func (s *Server) Stats() Stats {
	return Stats{
		Allocations:    s.srv.AllocationCount(),
		RefusedAuth:    s.count.auth.Load(),
		RefusedPeers:   s.count.peers.Load(),
		RefusedPackets: s.count.packets.Load(),
		RefusedQuota:   s.count.quota.Load(),
		RefusedTCP:     s.count.tcp.Load(),
	}
}
