package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/cluster/clustertest"
)

// TestPlaceViewer: with RelayAbove 2 the channel's hub keeps two viewers, sends the next two
// to the least loaded other hub (a relay then, which keeps the viewers sent to it, while a
// hub that is no relay sends them to the channel's hub), then opens a second relay once
// the first is full; a relay that drops its record is no longer one.
func TestPlaceViewer(t *testing.T) {
	redis := clustertest.StartRedis(t, "")
	a := startHub(t, redis, "a", 600*time.Millisecond)
	b := startHub(t, redis, "b", 600*time.Millisecond)
	c := startHub(t, redis, "c", 600*time.Millisecond)
	b.load.Store(5)
	c.load.Store(1)
	for _, h := range []*testHub{a, b, c} {
		h.d.opts.RelayAbove = 2
	}
	ctx := context.Background()
	urlOf := func(h *testHub) string { return h.d.opts.PublicURL }
	// a's cached view of the hubs must hold b and c with their loads.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		a.d.mu.Lock()
		n, loaded := len(a.d.hubs), 0
		for _, h := range a.d.hubs {
			loaded += h.Load
		}
		a.d.mu.Unlock()
		if n == 3 && loaded == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub a sees %d hubs (load %d), want 3 (6)", n, loaded)
		}
	}
	viewer := func(h *testHub, here int) (string, string) {
		t.Helper()
		to, origin, err := h.d.PlaceViewer(ctx, "demo", "big", here)
		if err != nil {
			t.Fatalf("%s: PlaceViewer: %v", h.d.ID(), err)
		}
		return to, origin
	}
	if to, origin := viewer(a, 0); to != "" || origin != "" {
		t.Fatalf("first viewer of an unplaced channel at a: to %q origin %q, want it placed on a", to, origin)
	}
	a.setActive("big", true)
	if to, _ := viewer(a, 1); to != "" {
		t.Fatalf("second viewer at a sent to %q, want it kept (relayAbove 2)", to)
	}
	if to, _ := viewer(a, 2); to != urlOf(c) {
		t.Fatalf("third viewer at a sent to %q, want c, the least loaded other hub", to)
	}
	if to, origin := viewer(c, 0); to != "" || origin != urlOf(a) {
		t.Fatalf("at the relay c: to %q origin %q, want it kept and relayed from a", to, origin)
	}
	if to, origin := viewer(b, 0); to != urlOf(a) || origin != "" {
		t.Fatalf("at b, no relay: to %q origin %q, want it sent to a", to, origin)
	}
	if to, _ := viewer(a, 2); to != urlOf(c) {
		t.Fatalf("fourth viewer at a sent to %q, want c (one viewer of 2 there)", to)
	}
	if to, _ := viewer(a, 2); to != urlOf(b) {
		t.Fatalf("fifth viewer at a sent to %q, want b (c is full)", to)
	}
	if err := c.d.DropRelay(ctx, "demo", "big"); err != nil {
		t.Fatal(err)
	}
	if to, origin := viewer(c, 0); to != urlOf(a) || origin != "" {
		t.Fatalf("at c after its relay closed: to %q origin %q, want it sent to a", to, origin)
	}
}
