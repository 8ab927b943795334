package agent

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/systemd"
)

// The agent under a systemd-like supervisor: the test is the service manager, listening on
// the NOTIFY_SOCKET. READY=1 comes once the MQTT connection is up; WATCHDOG=1 follows while
// the agent's heartbeat runs; a deadlocked agent (its state lock held forever, the test's
// hung main loop) stops the pings; STOPPING=1 on shutdown.
func TestWatchdogUnderNotifySocket(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the watchdog's pings to stop: not in -short")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type msg struct {
		text string
		at   time.Time
	}
	msgs := make(chan msg, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- msg{string(buf[:n]), time.Now()}
		}
	}()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "1000000") // pings every 500 ms
	t.Setenv("WATCHDOG_PID", "")

	log := slog.New(slog.DiscardHandler)
	hcfg := hub.Defaults()
	hcfg.Demo = true // loopback trust: the agent and the test clients have no credentials
	hcfg.Listen, hcfg.MQTTListen, hcfg.StateDir = "127.0.0.1:0", "127.0.0.1:0", filepath.Join(dir, "hub")
	h, err := hub.New(hcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(hubCtx) }()
	defer func() { stopHub(); <-hubDone }()
	<-h.Ready()

	// Start the agent before its broker is known to be reachable: no READY yet.
	cfg := Defaults()
	cfg.ID = "watchdog-device"
	cfg.MQTT = h.BrokerURL()
	cfg.Hub = "http://" + h.Addr()
	cfg.StateDir = filepath.Join(dir, "agent")
	cfg.Speaker = "null"
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	supDone := make(chan struct{})
	go func() { agentDone <- a.Run(ctx) }()
	go func() { systemd.Supervise(ctx, a.Ready(), a.LastHeartbeat, log); close(supDone) }()

	next := func(within time.Duration) (msg, bool) {
		select {
		case m := <-msgs:
			return m, true
		case <-time.After(within):
			return msg{}, false
		}
	}
	m, ok := next(10 * time.Second)
	if !ok || m.text != "READY=1" {
		t.Fatalf("first notification %q (%v), want READY=1", m.text, ok)
	}
	select {
	case <-a.Ready():
	default:
		t.Fatal("READY=1 before the agent's broker connection was up")
	}
	start := time.Now()
	for i := 0; i < 4; i++ {
		m, ok := next(2 * time.Second)
		if !ok || m.text != "WATCHDOG=1" {
			t.Fatalf("ping %d: %q (%v)", i, m.text, ok)
		}
	}
	t.Logf("4 pings in %s", time.Since(start).Round(time.Millisecond))

	// Hang the main loop: hold the agent's state lock, as a deadlock would.
	a.mu.Lock()
	hungAt := time.Now()
	var last time.Time
	for {
		m, ok := next(2500 * time.Millisecond)
		if !ok {
			break
		}
		if m.text != "WATCHDOG=1" {
			t.Fatalf("unexpected %q while hung", m.text)
		}
		last = m.at
		if time.Since(hungAt) > 5*time.Second {
			t.Fatal("pings go on while the agent is hung")
		}
	}
	if !last.IsZero() && last.Sub(hungAt) > 2*time.Second {
		t.Errorf("last ping %s after the hang (watchdog interval 1 s)", last.Sub(hungAt))
	}
	t.Logf("pings stopped %s after the hang", last.Sub(hungAt).Round(time.Millisecond))

	// Recovered (in real life systemd would have restarted it): pings resume.
	a.mu.Unlock()
	if m, ok := next(3 * time.Second); !ok || m.text != "WATCHDOG=1" {
		t.Fatalf("after recovery: %q (%v)", m.text, ok)
	}
	cancel()
	<-supDone
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	for {
		m, ok := next(time.Second)
		if !ok {
			t.Fatal("no STOPPING=1")
		}
		if m.text == "STOPPING=1" {
			break
		}
	}
}
