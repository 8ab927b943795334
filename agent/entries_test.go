package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/internal/deadaddr"
	"github.com/camagent/camagent/rtc"
)

func TestHubEntries(t *testing.T) {
	c := Defaults()
	c.Hub, c.Hubs = "http://a:8080", []string{"http://B:8080/", "http://c:8080", "http://a:8080"}
	if got := c.hubEntries("http://c:8080"); len(got) != 1 || got[0] != "http://c:8080" {
		t.Fatalf("without hubFailover: %v, want only the join's hub", got)
	}
	c.HubFailover = true
	want := []string{"http://c:8080", "http://a:8080", "http://B:8080/"}
	if got := c.hubEntries("http://c:8080"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries %v, want %v (the join's hub first, each hub once)", got, want)
	}
}

func TestEntryDown(t *testing.T) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, refused := rtc.Dial(context.Background(), rtc.ClientOptions{URL: "http://" + deadaddr.Closed(t), API: api})
	if refused == nil || !entryDown(refused) {
		t.Fatalf("a refused dial (%v): not down", refused)
	}
	if entryDown(fmt.Errorf("%w (redirected there): %w", rtc.ErrHolderUnreachable, refused)) {
		t.Fatal("a dead holder behind a live entry: the entry counted as down")
	}
	if entryDown(&rtc.Error{Code: rtc.CodeTokenInvalid, Message: "bad"}) || entryDown(errors.New("hub token service answered 500")) {
		t.Fatal("an answer counted as the entry being down")
	}
}

// demoHub runs a hub in demo mode (loopback trust) until the test ends or stop is called.
func demoHub(t *testing.T, name string) (h *hub.Hub, stop func()) {
	t.Helper()
	cfg := hub.Defaults()
	cfg.Demo = true
	cfg.Listen, cfg.MQTTListen, cfg.StateDir = "127.0.0.1:0", "127.0.0.1:0", filepath.Join(t.TempDir(), name)
	h, err := hub.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	<-h.Ready()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return h, stop
}

func entryAgent(t *testing.T, hubURL string, failover bool, hubs ...string) *Agent {
	t.Helper()
	cfg := Defaults()
	cfg.ID, cfg.Hub, cfg.Hubs, cfg.HubFailover = "entry-device", hubURL, hubs, failover
	cfg.StateDir, cfg.Speaker, cfg.ICELoopbackOnly = t.TempDir(), "null", true
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (c *call) connectedHub() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		return ""
	}
	return c.client.URL()
}

// TestJoinThroughNextHub: a join whose hub refuses connections goes through the next
// configured hub with hubFailover, and fails without it; a call whose hub then dies rejoins
// through the next one by itself.
func TestJoinThroughNextHub(t *testing.T) {
	dead := "http://" + deadaddr.Closed(t)
	h1, stop1 := demoHub(t, "h1")
	h2, _ := demoHub(t, "h2")
	u1, u2 := "http://"+h1.Addr(), "http://"+h2.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	p := joinParams{appID: "demo", channel: "entries", uid: 4242, hub: dead}
	if c, err := entryAgent(t, dead, false, u1).startCall(ctx, p); err == nil || !entryDown(err) {
		if c != nil {
			c.stop()
		}
		t.Fatalf("without hubFailover: %v, want the dead hub's refusal", err)
	}

	c, err := entryAgent(t, dead, true, u1, u2).startCall(ctx, p)
	if err != nil {
		t.Fatalf("with hubFailover: %v", err)
	}
	defer c.stop()
	if got := c.connectedHub(); got != rtc.HubWebSocketURL(u1) {
		t.Fatalf("joined through %q, want the first live hub %q", got, rtc.HubWebSocketURL(u1))
	}

	// Its hub dies: the rejoin finds the dead one again, then the second live one.
	stop1()
	for deadline := time.Now().Add(15 * time.Second); c.connectedHub() != rtc.HubWebSocketURL(u2); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after its hub stopped: on %q, want %q", c.connectedHub(), rtc.HubWebSocketURL(u2))
		}
	}
	if users := h2.SFU().ChannelUsers("demo", "entries"); len(users) != 1 || users[0] != 4242 {
		t.Fatalf("the second hub's channel has users %v, want the device (4242)", users)
	}
}
