package turn

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pturn "github.com/pion/turn/v5"
)

// recorder is a UDP socket on loopback that keeps whatever arrives.
type recorder struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []string
	seen chan struct{} // one per datagram
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{conn: c, seen: make(chan struct{}, 100)}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.got = append(r.got, string(buf[:n]))
			r.mu.Unlock()
			r.seen <- struct{}{}
		}
	}()
	return r
}

func (r *recorder) addr() *net.UDPAddr { return r.conn.LocalAddr().(*net.UDPAddr) }

func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// wait returns the next datagram's text.
func (r *recorder) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-r.seen:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing arrived")
	}
	got := r.received()
	return got[len(got)-1]
}

// syncBuffer is a log sink the server writes to from its goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const relaySecret = "relay-test-secret-0123456789"

// listenUDP starts a server on loopback whose media address is 127.0.0.1 (port mediaPort).
func listenUDP(t *testing.T, o Options) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	o.Secret, o.UDPAddr, o.RelayIP, o.MediaIPs = relaySecret, "127.0.0.1:0", net.IPv4(127, 0, 0, 1), loopback
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

// client is a pion TURN client of s over UDP with credential c.
func client(t *testing.T, s *Server, c Credential) *pturn.Client {
	t.Helper()
	return clientOf(t, s.UDPAddr(), c)
}

// clientOf is a pion TURN client of the server at addr over UDP with credential c.
func clientOf(t *testing.T, addr string, c Credential) *pturn.Client {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	cl, err := pturn.NewClient(&pturn.ClientConfig{TURNServerAddr: addr, STUNServerAddr: addr,
		Conn: pc, Username: c.Username, Password: c.Password, Realm: "camagent", RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestRelayReachesOnlyTheHubsMedia: a client with a valid credential gets an allocation, but
// its relay reaches neither private networks nor the hub's other ports; only the hub's media
// port gets (and answers) its packets.
func TestRelayReachesOnlyTheHubsMedia(t *testing.T) {
	media, other := newRecorder(t), newRecorder(t)
	s, logs := listenUDP(t, Options{MediaPort: media.addr().Port})
	cred := Mint(relaySecret, "viewer-7", time.Minute, time.Now())
	cl := client(t, s, cred)
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocation with a valid credential: %v", err)
	}
	defer relay.Close()

	refused := []string{"10.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1", "169.254.169.254",
		"224.0.0.251", "0.0.0.0", "203.0.113.1"}
	for _, ip := range refused {
		peer := &net.UDPAddr{IP: net.ParseIP(ip), Port: 5000}
		if err := cl.CreatePermission(peer); err == nil {
			t.Errorf("permission for %s granted", ip)
		}
		if _, err := relay.WriteTo([]byte("to "+ip), peer); err == nil {
			t.Errorf("send to %s accepted", ip)
		}
	}
	// IPv6 peers (fd00::/8, loopback) on an IPv4 relay: refused as well.
	for _, ip := range []string{"fd00::1", "::1"} {
		if err := cl.CreatePermission(&net.UDPAddr{IP: net.ParseIP(ip), Port: 5000}); err == nil {
			t.Errorf("permission for %s granted", ip)
		}
	}
	// The hub's own address on another port: the permission (per address) is granted, every
	// packet dropped, over send indications and, once bound, the channel.
	for i := range 10 {
		if _, err := relay.WriteTo([]byte("to other"), other.addr()); err != nil {
			t.Fatalf("send %d to another loopback port: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // time for the channel binding to complete
	}
	// The hub's media port: delivered, and the answer comes back.
	if _, err := relay.WriteTo([]byte("hello media"), media.addr()); err != nil {
		t.Fatalf("send to the media port: %v", err)
	}
	if got := media.wait(t); got != "hello media" {
		t.Fatalf("media port got %q", got)
	}
	relayAddr := relay.LocalAddr().(*net.UDPAddr)
	if _, err := media.conn.WriteToUDP([]byte("answer"), relayAddr); err != nil {
		t.Fatal(err)
	}
	// The other port writes to the relay too: that must not reach the client either.
	if _, err := other.conn.WriteToUDP([]byte("from other"), relayAddr); err != nil {
		t.Fatal(err)
	}
	if _, err := media.conn.WriteToUDP([]byte("answer 2"), relayAddr); err != nil {
		t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for _, want := range []string{"answer", "answer 2"} {
		n, from, err := relay.ReadFrom(buf)
		if err != nil {
			t.Fatalf("reading the media port's answer: %v", err)
		}
		if string(buf[:n]) != want || from.String() != media.addr().String() {
			t.Fatalf("client got %q from %s, want %q from the media port", buf[:n], from, want)
		}
	}

	// The media packet was sent after the others over the same socket, and the server handles
	// a socket's packets in order: whatever was to reach the other port would be there.
	if got := other.received(); len(got) != 0 {
		t.Errorf("the other loopback port received %q", got)
	}
	if got := media.received(); len(got) != 1 {
		t.Errorf("the media port received %q, want only the one packet for it", got)
	}
	st := s.Stats()
	if st.RefusedPeers < uint64(2*len(refused)) || st.RefusedPackets < 11 || st.Allocations != 1 {
		t.Errorf("stats %+v", st)
	}
	l := logs.String()
	if !strings.Contains(l, "TURN permission refused") || !strings.Contains(l, "user="+cred.Username) {
		t.Errorf("refusals not logged with the username:\n%s", l)
	}
	if strings.Contains(l, cred.Password) {
		t.Error("the password is in the logs")
	}
	if n := strings.Count(l, "level=WARN"); n > 3 {
		t.Errorf("%d warnings for a burst of refusals, want them rate-limited:\n%s", n, l)
	}
}

// TestRelayWithEphemeralMediaPorts: with udpPort 0 the hub's media ports are not known in
// advance, so a relay may reach any port of the hub's addresses, and still nothing else.
func TestRelayWithEphemeralMediaPorts(t *testing.T) {
	media := newRecorder(t)
	s, _ := listenUDP(t, Options{})
	cl := client(t, s, Mint(relaySecret, "viewer-8", time.Minute, time.Now()))
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	for _, ip := range []string{"10.0.0.1", "192.168.1.1"} {
		if _, err := relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP(ip), Port: media.addr().Port}); err == nil {
			t.Errorf("send to %s accepted", ip)
		}
	}
	if _, err := relay.WriteTo([]byte("hello"), media.addr()); err != nil {
		t.Fatal(err)
	}
	if got := media.wait(t); got != "hello" {
		t.Fatalf("got %q", got)
	}
}

// TestAllocationQuota: a credential gets at most UserQuota allocations and the server at most
// TotalQuota; a released allocation frees its place.
func TestAllocationQuota(t *testing.T) {
	s, logs := listenUDP(t, Options{UserQuota: 2, TotalQuota: 3})
	now := time.Now()
	a, b := Mint(relaySecret, "a", time.Minute, now), Mint(relaySecret, "b", time.Minute, now)
	allocate := func(c Credential) (net.PacketConn, error) {
		relay, err := client(t, s, c).Allocate()
		if err == nil {
			t.Cleanup(func() { relay.Close() })
		}
		return relay, err
	}
	first, err := allocate(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(a); err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(a); err == nil {
		t.Fatal("a third allocation for one credential")
	}
	if _, err := allocate(b); err != nil {
		t.Fatalf("another credential within the total: %v", err)
	}
	if _, err := allocate(b); err == nil {
		t.Fatal("an allocation over the total quota")
	}
	if st := s.Stats(); st.Allocations != 3 || st.RefusedQuota != 2 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "quota reached") {
		t.Errorf("quota refusal not logged:\n%s", logs.String())
	}
	first.Close() // deallocates: a refresh with lifetime 0
	for start := time.Now(); s.Stats().Allocations != 2; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("allocation not released: %+v", s.Stats())
		}
	}
	if _, err := allocate(b); err != nil {
		t.Fatalf("allocation after one was released: %v", err)
	}
}

// TestTCPRelayRefused: RFC 6062 TCP relays (which could open TCP connections anywhere) are not
// offered.
func TestTCPRelayRefused(t *testing.T) {
	s, _ := listenUDP(t, Options{})
	cl := client(t, s, Mint(relaySecret, "viewer", time.Minute, time.Now()))
	if _, err := cl.AllocateTCP(); err == nil {
		t.Fatal("TCP allocation granted")
	}
	if st := s.Stats(); st.RefusedTCP != 1 || st.Allocations != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRefusedCredentialsCounted: expired and wrong-password credentials are counted.
func TestRefusedCredentialsCounted(t *testing.T) {
	s, _ := listenUDP(t, Options{})
	now := time.Now()
	for _, c := range []Credential{Mint(relaySecret, "v", -time.Second, now), Mint("another-secret-0123456789", "v", time.Minute, now)} {
		if _, err := client(t, s, c).Allocate(); err == nil {
			t.Fatal("allocation granted")
		}
	}
	if st := s.Stats(); st.RefusedAuth < 2 || st.Allocations != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := &limiter{every: time.Second, now: func() time.Time { return now }}
	if ok, _ := l.allow(); !ok {
		t.Fatal("first event held")
	}
	for range 5 {
		if ok, _ := l.allow(); ok {
			t.Fatal("event within the interval let through")
		}
	}
	now = now.Add(time.Second)
	if ok, held := l.allow(); !ok || held != 5 {
		t.Fatalf("after the interval: %v, %d held", ok, held)
	}
}
