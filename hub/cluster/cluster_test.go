package cluster

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/cluster/clustertest"
)

// testHub is one running Directory with a load and a set of active channels the test sets.
type testHub struct {
	d      *Directory
	load   atomic.Int64
	mu     sync.Mutex
	active map[string]bool
	lost   chan string
	done   chan error
	cancel context.CancelFunc
}

func startHub(t *testing.T, redis, id string, lease time.Duration) *testHub {
	t.Helper()
	h := &testHub{active: map[string]bool{}, lost: make(chan string, 8), done: make(chan error, 1)}
	d, err := New(Options{Redis: redis, HubID: id, PublicURL: "https://" + id + ".test:8443", Lease: lease,
		Load: func() int { return int(h.load.Load()) },
		Active: func(app, ch string) bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.active[app+"/"+ch]
		},
		Lost:   func(app, ch string) { h.lost <- app + "/" + ch },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	select {
	case <-d.Ready():
	case err := <-h.done:
		t.Fatalf("hub %s: %v", id, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("hub %s not registered", id)
	}
	return h
}

func (h *testHub) stop(t *testing.T) {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		t.Errorf("hub %s: Run: %v", h.d.ID(), err)
	}
}

func (h *testHub) setActive(ch string, on bool) {
	h.mu.Lock()
	h.active["demo/"+ch] = on
	h.mu.Unlock()
}

func place(t *testing.T, h *testHub, ch string) string {
	t.Helper()
	url, err := h.d.Place(context.Background(), "demo", ch)
	if err != nil {
		t.Fatalf("%s: Place %s: %v", h.d.ID(), ch, err)
	}
	return url
}

func TestPlaceHoldsAndRedirects(t *testing.T) {
	redis := clustertest.StartRedis(t, "s3cret-pass")
	a := startHub(t, redis, "a", time.Second)
	b := startHub(t, redis, "b", time.Second)
	a.setActive("porch", true)
	if url := place(t, a, "porch"); url != "" {
		t.Fatalf("first join at a: sent to %q, want to stay on a", url)
	}
	if url := place(t, b, "porch"); url != "https://a.test:8443" {
		t.Fatalf("join at b: %q, want a's URL", url)
	}
	// The lease outlives several of its terms while the channel is active.
	time.Sleep(2500 * time.Millisecond)
	if owner, _ := b.d.Owner(context.Background(), "demo", "porch"); owner != "a" {
		t.Fatalf("owner after 2.5 leases: %q, want a", owner)
	}
	if url := place(t, b, "porch"); url != "https://a.test:8443" {
		t.Fatalf("join at b later: %q", url)
	}
	hubs, err := b.d.Hubs(context.Background())
	if err != nil || len(hubs) != 2 || hubs[0].ID != "a" || hubs[1].ID != "b" {
		t.Fatalf("Hubs: %+v, %v", hubs, err)
	}
	// The channel ends on a: its lease is released, and the next join anywhere places it anew.
	a.setActive("porch", false)
	deadline := time.Now().Add(3 * time.Second)
	for owner := "a"; owner != ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("an ended channel is still held by %q", owner)
		}
		owner, _ = b.d.Owner(context.Background(), "demo", "porch")
	}
	if url := place(t, b, "porch"); url != "" {
		t.Fatalf("join at b after the channel ended: %q, want b", url)
	}
	// A hub that leaves cleanly releases its channels and its registration at once.
	b.stop(t)
	if owner, _ := a.d.Owner(context.Background(), "demo", "porch"); owner != "" {
		t.Fatalf("after b left: owner %q", owner)
	}
	if url := place(t, a, "porch"); url != "" {
		t.Fatalf("join at a after b left: %q", url)
	}
}

// seesLoads waits until h's view of the live hubs (refreshed as it renews its registration)
// has these loads; a fixed sleep was too short on a loaded machine.
func seesLoads(t *testing.T, h *testHub, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h.d.mu.Lock()
		got := map[string]int{}
		for _, x := range h.d.hubs {
			got[x.ID] = x.Load
		}
		h.d.mu.Unlock()
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub %s sees loads %v, want %v", h.d.ID(), got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPlacementLeastLoaded(t *testing.T) {
	redis := clustertest.StartRedis(t, "")
	a := startHub(t, redis, "a", time.Second)
	b := startHub(t, redis, "b", time.Second)
	c := startHub(t, redis, "c", time.Second)
	a.load.Store(5)
	b.load.Store(1)
	c.load.Store(2)
	seesLoads(t, a, map[string]int{"a": 5, "b": 1, "c": 2}) // renewals publish them, a reads them
	var got []string
	for _, ch := range []string{"c1", "c2", "c3", "c4"} {
		got = append(got, place(t, a, ch))
	}
	// b (1), then b (2, counted by a) ties c (2): the first by id, then c, then b at 3 vs c 3.
	want := []string{"https://b.test:8443", "https://b.test:8443", "https://c.test:8443", "https://b.test:8443"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("placements: %v, want %v", got, want)
	}
	// Each target holds what was placed on it when its user arrives.
	if url := place(t, b, "c1"); url != "" {
		t.Fatalf("the user placed on b reaches b: sent on to %q", url)
	}
	if url := place(t, c, "c1"); url != "https://b.test:8443" {
		t.Fatalf("c for c1: %q", url)
	}
	// On a tie the entry hub keeps the channel: no redirect.
	b.load.Store(5)
	c.load.Store(5)
	seesLoads(t, a, map[string]int{"a": 5, "b": 5, "c": 5})
	if url := place(t, a, "c5"); url != "" {
		t.Fatalf("tie: sent to %q, want to stay on a", url)
	}
}

// TestLeaseExpiryWhenHubDies cuts hub a from Redis (as if it were killed: it renews
// nothing and says no goodbye): once its lease has run out its channel goes to the next
// hub asked; when a reaches Redis again it learns it lost the channel.
func TestLeaseExpiryWhenHubDies(t *testing.T) {
	redis := clustertest.StartRedis(t, "")
	p := clustertest.NewCutProxy(t, strings.TrimPrefix(redis, "redis://"))
	lease := 900 * time.Millisecond
	a := startHub(t, "redis://"+p.Addr(), "a", lease)
	b := startHub(t, redis, "b", lease)
	a.setActive("porch", true)
	if url := place(t, a, "porch"); url != "" {
		t.Fatalf("join at a: %q", url)
	}
	p.Cut(true)
	cutAt := time.Now()
	var moved time.Duration
	for {
		url := place(t, b, "porch")
		if url == "" {
			moved = time.Since(cutAt)
			break
		}
		if url != "https://a.test:8443" {
			t.Fatalf("while a's lease lasts: %q", url)
		}
		if time.Since(cutAt) > 5*lease {
			t.Fatal("the dead hub's channel never moved")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if moved < lease/3 {
		t.Fatalf("the channel moved %s after the cut, before a's lease (%s) could have run out", moved, lease)
	}
	t.Logf("channel moved to b %s after a was cut off (lease %s)", moved.Round(time.Millisecond), lease)
	hubs, _ := b.d.Hubs(context.Background())
	if len(hubs) != 1 || hubs[0].ID != "b" {
		t.Fatalf("live hubs after a died: %+v", hubs)
	}
	b.setActive("porch", true)
	p.Cut(false)
	select {
	case ch := <-a.lost:
		if ch != "demo/porch" {
			t.Fatalf("lost %q", ch)
		}
	case <-time.After(5 * lease):
		t.Fatal("a, back, was never told its channel is held by b")
	}
	if owner, _ := b.d.Owner(context.Background(), "demo", "porch"); owner != "b" {
		t.Fatalf("owner after a came back: %q, want b", owner)
	}
	if url := place(t, a, "porch"); url != "https://b.test:8443" {
		t.Fatalf("join at a after it came back: %q, want b", url)
	}
}

func TestDuplicateHubIDRefused(t *testing.T) {
	redis := clustertest.StartRedis(t, "")
	startHub(t, redis, "a", 300*time.Millisecond)
	d, err := New(Options{Redis: redis, HubID: "a", PublicURL: "https://other.test", Lease: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = d.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "another live hub") {
		t.Fatalf("a second hub with a live id: %v", err)
	}
	select {
	case <-d.Ready():
		t.Fatal("the second hub registered")
	default:
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{
		{Redis: "redis://127.0.0.1:1", PublicURL: "https://a"},
		{Redis: "redis://127.0.0.1:1", HubID: "a", PublicURL: "a.example:8443"},
		{Redis: "http://127.0.0.1:1", HubID: "a", PublicURL: "https://a"},
		{Redis: "redis://127.0.0.1:1/x", HubID: "a", PublicURL: "https://a"},
		{Redis: "redis://127.0.0.1:1", HubID: "a", PublicURL: "https://a", Lease: time.Millisecond},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
