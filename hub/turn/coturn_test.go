package turn

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/camagent/camagent/internal/freeport"
)

// coturnPeerRules are docs/networking.md's peer restrictions for an external coturn, with the
// hub's media address being 127.0.0.1 here (which coturn refuses unless allow-loopback-peers).
var coturnPeerRules = []string{
	"--no-multicast-peers", "--allow-loopback-peers",
	"--denied-peer-ip=0.0.0.0-255.255.255.255", "--denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	"--denied-peer-ip=10.0.0.0-10.255.255.255", "--denied-peer-ip=172.16.0.0-172.31.255.255",
	"--denied-peer-ip=192.168.0.0-192.168.255.255", "--denied-peer-ip=100.64.0.0-100.127.255.255",
	"--denied-peer-ip=169.254.0.0-169.254.255.255", "--denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	"--allowed-peer-ip=127.0.0.1", "--user-quota=2", "--total-quota=512",
}

// TestCoturnAcceptsOurCredentials: Debian's coturn, configured as docs/networking.md says
// (use-auth-secret with the hub's secret, peers restricted to the hub), grants allocations to
// the credentials the hub hands out, over UDP and TCP, and refuses expired ones and another
// secret's; its relays reach the hub's address and no private one, and a credential gets
// user-quota allocations at most.
func TestCoturnAcceptsOurCredentials(t *testing.T) {
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Fatal("coturn's turnserver is missing: run make test-deps")
	}
	const secret = "coturn-test-secret-0123456789"
	port := freePort(t)
	var logs syncBuffer
	args := append([]string{"-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log", "--log-file=stdout",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", fmt.Sprintf("--listening-port=%d", port),
		"--min-port=49160", "--max-port=49200", "--use-auth-secret", "--static-auth-secret=" + secret,
		"--realm=camagent", "--pidfile=" + t.TempDir() + "/turnserver.pid"}, coturnPeerRules...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("turnserver output:\n%s", logs.String())
		}
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("turnserver did not listen on %s", addr)
		}
	}
	now := time.Now()
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) { checkCredentials(t, secret, network, addr, nil, now) })
	}
	t.Run("peers", func(t *testing.T) {
		media := newRecorder(t)
		cred := Mint(secret, "viewer-9", time.Minute, now)
		cl := clientOf(t, addr, cred)
		relay, err := cl.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		for _, ip := range []string{"10.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1", "127.0.0.2", "224.0.0.251"} {
			if err := cl.CreatePermission(&net.UDPAddr{IP: net.ParseIP(ip), Port: 5000}); err == nil {
				t.Errorf("coturn granted a permission for %s", ip)
			}
		}
		if _, err := relay.WriteTo([]byte("hello media"), media.addr()); err != nil {
			t.Fatal(err)
		}
		if got := media.wait(t); got != "hello media" {
			t.Fatalf("media got %q", got)
		}
		// user-quota=2: this credential has one allocation, gets one more, not a third.
		if r, err := clientOf(t, addr, cred).Allocate(); err != nil {
			t.Fatalf("second allocation: %v", err)
		} else {
			defer r.Close()
		}
		if r, err := clientOf(t, addr, cred).Allocate(); err == nil {
			r.Close()
			t.Fatal("coturn granted a third allocation to one credential")
		}
	})
}

// freePort returns a port free on 127.0.0.1 for both UDP and TCP, below the ephemeral range.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
