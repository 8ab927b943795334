package bench

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeerRunSmallest runs the side-by-side measurement's smallest configuration against an
// in-process hub (no go2rtc, no MediaMTX: CI has neither) so that it cannot rot: a WHIP
// publisher, 2 WHEP viewers from two source addresses, the figures. It checks that the
// figures come out, never their values.
func TestPeerRunSmallest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and WebRTC connections")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := startInProcess(ctx, t.TempDir(), quietLogger(os.Stderr, false))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	srv := &peerServer{name: "camhub", id: "camhub", whip: s.hubURL + "/whip/demo/" + peersChannel,
		whep: s.hubURL + "/whep/demo/" + peersChannel, pid: os.Getpid(), hub: &s.env}
	o := peerOptions{Levels: []int{viewersPerAddress + 1}, Settle: 500 * time.Millisecond, Window: time.Second, After: 100 * time.Millisecond}
	res := peerResult{name: "camhub", id: "camhub"}
	if err := measurePeer(ctx, srv, o, &res, func(f string, a ...any) { t.Logf(f, a...) }); err != nil {
		t.Fatal(err)
	}
	lv, ok := res.level(o.Levels[0])
	if !ok || len(lv.lat) == 0 || lv.delivered == 0 || lv.warmStarts < 0 {
		t.Fatalf("no figures at %d viewers: %+v", o.Levels[0], lv)
	}
	r := NewResults("..", true)
	addPeerFigures(r, []peerResult{res, {name: "go2rtc", id: "go2rtc", skipped: "not run: test"}}, o)
	if f := figure(r, "peers.camhub.n16.p95"); f == nil || f.N == 0 || f.Target != 0 || !strings.Contains(f.Peers, "go2rtc —") {
		t.Errorf("camhub's p95 figure: %+v", f)
	}
}

// TestPeerFigures: camhub's targets are 0.7× (latency, CPU) or 0.5× (memory per viewer) the
// better peer that was measured; a peer not run is "not measured" with its reason.
func TestPeerFigures(t *testing.T) {
	lat := func(ms float64) Durations {
		d := make(Durations, 100)
		for i := range d {
			d[i] = time.Duration(ms * float64(time.Millisecond))
		}
		return d
	}
	o := peerOptions{Levels: []int{100}, After: time.Minute}
	results := []peerResult{
		{name: "camhub", id: "camhub", base: peerLevel{rssKB: 40 << 10}, rssAfterKB: 90 << 10,
			levels: []peerLevel{{n: 100, lat: lat(5), cpu: 20, rssKB: 60 << 10}}},
		{name: "go2rtc", id: "go2rtc", base: peerLevel{rssKB: 20 << 10}, rssAfterKB: 900 << 10,
			levels: []peerLevel{{n: 100, lat: lat(4), cpu: 30, rssKB: 320 << 10}}},
		{name: "MediaMTX", id: "mediamtx", skipped: "not run (set BENCH_MEDIAMTX)"},
	}
	r := NewResults("..", true)
	addPeerFigures(r, results, o)
	want := map[string]float64{ // camhub's targets
		"peers.camhub.n100.p50":            0.7 * 4,
		"peers.camhub.n100.cpu":            0.7 * 30,
		"peers.camhub.n100.rss_per_viewer": 0.5 * 3,
		"peers.camhub.rss_after":           2 * 40,
	}
	for id, target := range want {
		f := figure(r, id)
		if f == nil || math.Abs(f.Target-target) > 1e-9 {
			t.Errorf("%s: %+v, want target %g", id, f, target)
		}
	}
	if f := figure(r, "peers.camhub.n100.rss_per_viewer"); f == nil || f.Value != 0.2 || !f.Met() {
		t.Errorf("camhub's RSS per viewer: %+v", f)
	}
	if f := figure(r, "peers.camhub.rss_after"); f == nil || f.Met() {
		t.Errorf("RSS after (90 MB against 2 × 40 MB) should not be met: %+v", f)
	}
	if f := figure(r, "peers.mediamtx.n100.p95"); f == nil || f.Skipped != "not run (set BENCH_MEDIAMTX)" {
		t.Errorf("MediaMTX not run: %+v", f)
	}
	path := filepath.Join(t.TempDir(), "results.json")
	if err := r.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	r.PrintTable(&table)
	if !strings.Contains(table.String(), "go2rtc 4 / MediaMTX — ms") || !strings.Contains(table.String(), "not measured") {
		t.Errorf("table:\n%s", table.String())
	}
}

func figure(r *Results, id string) *Figure {
	for i := range r.Figures {
		if r.Figures[i].ID == id {
			return &r.Figures[i]
		}
	}
	return nil
}
