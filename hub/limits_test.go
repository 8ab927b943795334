package hub

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMaxConnectionsPerAddress: the configured cap reaches the channel service: with 3, the
// fourth signalling socket from 127.0.0.1 is refused with 429 and the three stay open; one
// more is accepted once one of them closes.
func TestMaxConnectionsPerAddress(t *testing.T) {
	cfg := Defaults()
	cfg.Demo = true
	cfg.Listen, cfg.MQTTListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.StateDir = filepath.Join(t.TempDir(), "hub")
	cfg.MaxConnectionsPerAddress = 3
	h := runTestHub(t, cfg, 10*time.Second)
	url := "ws://" + h.Addr() + "/rtc"
	var open []*websocket.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range 3 {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatalf("socket %d: %v", i+1, err)
		}
		open = append(open, c)
	}
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth socket: err %v, response %v; want 429", err, resp)
	}
	for i, c := range open { // the three are untouched
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if err := c.WriteMessage(websocket.PingMessage, nil); err != nil {
			t.Errorf("socket %d after the refusal: %v", i+1, err)
		}
	}
	open[0].Close()
	open = open[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			open = append(open, c)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place freed by a closed socket: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runTestHub runs a hub with cfg until the test ends; it fails the test if the hub does not
// report ready within wait.
func runTestHub(t *testing.T, cfg Config, wait time.Duration) *Hub {
	t.Helper()
	h, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-h.Ready():
	case err := <-done:
		t.Fatalf("hub: %v", err)
	case <-time.After(wait):
		t.Fatal("hub did not start")
	}
	return h
}
