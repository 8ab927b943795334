package sfu

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// giveback.go: memory back to the OS after many users leave.
//
// Each viewer costs the hub its peer connection's buffers (SRTP, NACK cache, pion's
// queues). When most of them leave, that memory is garbage, but with only a publisher left
// the heap grows too slowly to reach the collector's goal, and Go forces a collection only
// every two minutes: measured, a hub whose 200 viewers had left held 2.2–2.5× its
// publisher-alone RSS a minute later (docs/performance.md). So when the users have fallen to
// half their peak (and by at least MinDrop), and no one has left for Quiet, the hub collects
// and returns the freed pages at once (debug.FreeOSMemory), at most once per Every.

// Defaults of the give-back policy (Options.GiveBackQuiet; the others are fixed).
const (
	DefaultGiveBackQuiet = 5 * time.Second
	giveBackEvery        = 30 * time.Second
	giveBackMinDrop      = 10
)

type giveBack struct {
	quiet, every time.Duration
	minDrop      int
	free         func() // debug.FreeOSMemory; a test counts the calls
	log          *slog.Logger

	mu     sync.Mutex
	users  int // in every channel, a uid counted once
	peak   int // since the last give-back
	timer  *time.Timer
	last   time.Time // of the last give-back
	closed bool
}

// newGiveBack returns the policy; quiet ≤ 0 turns it off (nil).
func newGiveBack(quiet time.Duration, log *slog.Logger) *giveBack {
	if quiet <= 0 {
		return nil
	}
	return &giveBack{quiet: quiet, every: giveBackEvery, minDrop: giveBackMinDrop, free: debug.FreeOSMemory, log: log}
}

func (g *giveBack) joined() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users++
	g.peak = max(g.peak, g.users)
}

func (g *giveBack) left() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users--
	if g.closed || g.peak-g.users < g.minDrop || g.users > g.peak/2 {
		return
	}
	wait := g.quiet // after the last of a wave of leaves
	if next := time.Until(g.last.Add(g.every)); next > wait {
		wait = next
	}
	if g.timer == nil {
		g.timer = time.AfterFunc(wait, g.fire)
	} else {
		g.timer.Reset(wait)
	}
}

func (g *giveBack) fire() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.last = time.Now()
	users, peak := g.users, g.peak
	g.peak = g.users
	g.mu.Unlock()

	start := time.Now()
	g.free()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	g.log.Info("memory given back to the OS after users left", "users", users, "peak", peak,
		"took", time.Since(start).Round(time.Millisecond), "heapInUseMB", mb(ms.HeapInuse), "releasedMB", mb(ms.HeapReleased))
}

func (g *giveBack) close() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	if g.timer != nil {
		g.timer.Stop()
	}
}

func mb(b uint64) float64 { return float64(b*10/(1<<20)) / 10 }
