package turn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/tlsconf"
	pturn "github.com/pion/turn/v5"
)

func TestCredential(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := Mint("s3cret", "viewer-42", time.Hour, now)
	if c.Username != "1700003600:viewer-42" {
		t.Fatalf("username %q", c.Username)
	}
	// The scheme coturn's use-auth-secret checks: base64(HMAC-SHA1(secret, username)).
	if c.Password != Password("s3cret", c.Username) || len(c.Password) != 28 {
		t.Fatalf("password %q", c.Password)
	}
	for name, tc := range map[string]struct {
		user, pass string
		at         time.Time
		want       error
	}{
		"valid":          {c.Username, c.Password, now, nil},
		"valid at end-1": {c.Username, c.Password, c.Expires.Add(-time.Second), nil},
		"expired":        {c.Username, c.Password, c.Expires, ErrExpired},
		"malformed":      {"viewer", Password("s3cret", "viewer"), now, ErrMalformed},
	} {
		if err := Check("s3cret", tc.user, tc.pass, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if err := Check("other", c.Username, c.Password, now); err == nil {
		t.Error("a credential of another secret was accepted")
	}
}

// allocate asks the server at addr for a UDP relay (over UDP, TCP, or TLS trusting roots)
// with a credential.
func allocate(t *testing.T, network, addr string, c Credential, roots *x509.CertPool) error {
	t.Helper()
	var conn net.PacketConn
	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = pc
	case "tcp":
		tc, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = pturn.NewSTUNConn(tc)
	case "tls":
		tc, err := tls.Dial("tcp4", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		conn = pturn.NewSTUNConn(tc)
	}
	defer conn.Close()
	cl, err := pturn.NewClient(&pturn.ClientConfig{TURNServerAddr: addr, STUNServerAddr: addr, Conn: conn,
		Username: c.Username, Password: c.Password, Realm: "camagent", RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := cl.Allocate()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(relay.LocalAddr().String(), "127.0.0.1:") {
		t.Errorf("relay at %s, want the announced 127.0.0.1", relay.LocalAddr())
	}
	return relay.Close()
}

func TestServerRefusesExpiredCredentials(t *testing.T) {
	const secret = "test-secret-0123456789"
	// TURN over TLS with the hub's kind of self-signed certificate.
	cert, err := tlsconf.SelfSigned(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.TLS.Leaf)
	s, err := Listen(Options{Secret: secret, UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0",
		TLS: cert.Config(), RelayIP: net.IPv4(127, 0, 0, 1), MediaIPs: loopback, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for network, addr := range map[string]string{"udp": s.UDPAddr(), "tcp": s.TCPAddr(), "tls": s.TLSAddr()} {
		t.Run(network, func(t *testing.T) { checkCredentials(t, secret, network, addr, roots, now) })
	}
}

// checkCredentials: a credential minted with secret gets an allocation from the server at
// addr; an expired one, or another secret's, does not.
func checkCredentials(t *testing.T, secret, network, addr string, roots *x509.CertPool, now time.Time) {
	t.Helper()
	if err := allocate(t, network, addr, Mint(secret, "viewer", time.Minute, now), roots); err != nil {
		t.Fatalf("allocation with a valid credential: %v", err)
	}
	if err := allocate(t, network, addr, Mint(secret, "viewer", -time.Second, now), roots); err == nil {
		t.Fatal("allocation with an expired credential succeeded")
	}
	if err := allocate(t, network, addr, Mint("another-secret-0123456789", "viewer", time.Minute, now), roots); err == nil {
		t.Fatal("allocation with a credential of another secret succeeded")
	}
}

// loopback is the media address of a hub in tests.
func loopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1)} }

// TestCredentialEndsWithToken: a user whose token expires in 60 s gets a credential that
// expires within 60 s, which the server refuses once the token has expired.
func TestCredentialEndsWithToken(t *testing.T) {
	now := time.Now()
	token := now.Add(60 * time.Second)
	c := MintUntil(relaySecret, "viewer", 12*time.Hour, token, now)
	if c.Expires.After(token) || c.Expires.Before(token.Add(-time.Second)) {
		t.Fatalf("credential expires at %s, token at %s", c.Expires, token)
	}
	if exp, _ := Expiry(c.Username); !exp.Equal(c.Expires) {
		t.Fatalf("username %q does not carry the expiry %s", c.Username, c.Expires)
	}
	if c := MintUntil(relaySecret, "viewer", time.Hour, time.Time{}, now); c.Expires.Before(now.Add(time.Hour - time.Second)) {
		t.Errorf("without a token expiry the credential lives %s", c.Expires.Sub(now))
	}
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	s, _ := listenUDP(t, Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if _, err := client(t, s, c).Allocate(); err != nil {
		t.Fatalf("allocation before the token expires: %v", err)
	}
	clock.Store(token.UnixNano())
	if _, err := client(t, s, c).Allocate(); err == nil {
		t.Fatal("allocation with the credential of an expired token")
	}
	if st := s.Stats(); st.Allocations != 1 {
		t.Fatalf("stats %+v", st)
	}
}
