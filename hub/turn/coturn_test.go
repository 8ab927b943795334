package turn

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestCoturnAcceptsOurCredentials: Debian's coturn, configured as docs/networking.md says
// (use-auth-secret with the hub's secret), grants allocations to the credentials the hub hands
// out, over UDP and TCP, and refuses expired ones and another secret's.
func TestCoturnAcceptsOurCredentials(t *testing.T) {
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Fatal("coturn's turnserver is missing: run make test-deps")
	}
	const secret = "coturn-test-secret-0123456789"
	port := freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log", "--log-file=stdout",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", fmt.Sprintf("--listening-port=%d", port),
		"--min-port=49160", "--max-port=49200", "--use-auth-secret", "--static-auth-secret="+secret,
		"--realm=camagent", "--pidfile="+t.TempDir()+"/turnserver.pid")
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
}

// freePort returns a port free on 127.0.0.1 for both UDP and TCP (as far as one can tell).
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}
