package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// peerOptions size the side-by-side run.
type peerOptions struct {
	Levels         []int         // viewer counts, increasing
	Settle, Window time.Duration // wait after adding viewers; measuring time per level
	After          time.Duration // wait after the last viewer left before reading RSS (60 s)
}

// peerLevel is one server's figures with n viewers (n = 0: the publisher alone).
type peerLevel struct {
	n                     int
	lat                   Durations
	cpu, selfCPU, machine float64 // % of one core: the server, the bench process, the machine
	rssKB                 int64
	delivered             float64 // complete frames read ÷ (n × frames published), %
	warmStarts            float64 // camhub: camhub_warm_starts_total after this level (-1: none)
}

// peerResult is one server's run; skipped says why it was not measured.
type peerResult struct {
	name, id   string
	skipped    string
	base       peerLevel
	levels     []peerLevel
	rssAfterKB int64
	after      time.Duration
	load       string // /proc/loadavg when its run ended
}

// level returns the figures at n viewers, if measured.
func (p *peerResult) level(n int) (peerLevel, bool) {
	i := slices.IndexFunc(p.levels, func(l peerLevel) bool { return l.n == n })
	if i < 0 {
		return peerLevel{}, false
	}
	return p.levels[i], true
}

// measurePeers runs camhub, then go2rtc, then MediaMTX (those whose binaries are given), one
// after the other with the same clients and load, and adds the figures of section 8.
func measurePeers(ctx context.Context, repo, hubBin, dir string, e env, o peerOptions, r *Results, say func(string, ...any)) error {
	bins := findPeers(ctx, repo)
	type start func() (*peerServer, error)
	runs := []struct {
		name, id, why string
		start         start
	}{
		{"camhub", "camhub", "", func() (*peerServer, error) { return startCamhubPeer(ctx, hubBin, filepath.Join(dir, "camhub"), e) }},
		{"go2rtc", "go2rtc", bins.go2rtcWhy, func() (*peerServer, error) { return startGo2rtc(ctx, bins.go2rtc, filepath.Join(dir, "go2rtc")) }},
		{"MediaMTX", "mediamtx", bins.mediamtxWhy, func() (*peerServer, error) { return startMediaMTX(ctx, bins.mediamtx, filepath.Join(dir, "mediamtx")) }},
	}
	var results []peerResult
	var firstErr error
	for _, run := range runs {
		res := peerResult{name: run.name, id: run.id, skipped: run.why}
		if res.skipped == "" {
			say("8 side by side: %s, WHIP publisher → %v WHEP viewers", run.name, o.Levels)
			s, err := run.start()
			if err == nil {
				err = measurePeer(ctx, s, o, &res, say)
				s.stop()
			}
			if err != nil {
				res.skipped = "failed: " + err.Error()
				r.Note("side by side, %s: %v", run.name, err)
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", run.name, err)
				}
			}
		}
		results = append(results, res)
	}
	addPeerFigures(r, results, o)
	return firstErr
}

// measurePeer publishes into s, measures the publisher alone, then each level of viewers, then
// the RSS o.After after the last viewer left.
func measurePeer(ctx context.Context, s *peerServer, o peerOptions, res *peerResult, say func(string, ...any)) error {
	api, err := viewerAPI()
	if err != nil {
		return err
	}
	pub, err := startWHIPPublisher(ctx, api, s.whip)
	if err != nil {
		return err
	}
	defer pub.stop()
	w := &peerWatch{pub: pub}
	var viewers []*whepViewer
	closed := false
	defer func() {
		if !closed {
			w.closeViewers(viewers)
		}
	}()
	clients := make([]*http.Client, slices.Max(o.Levels)/viewersPerAddress+1)
	for i := range clients {
		clients[i] = loopbackClient(i)
	}

	measure := func(n int) peerLevel {
		lv := peerLevel{n: n}
		sleepCtx(ctx, o.Settle)
		frames0, pubFrames0 := w.frames.Load(), pub.frames.Load()
		server, self, machine := startCPU(s.pid), startCPU(os.Getpid()), startMachine()
		w.take()
		w.recording.Store(true)
		sleepCtx(ctx, o.Window)
		w.recording.Store(false)
		lv.cpu, lv.selfCPU, lv.machine = server.percent(), self.percent(), machine.percent()
		lv.rssKB, _, _ = memKB(s.pid)
		lv.lat = w.take()
		lv.warmStarts = -1
		if s.hub != nil {
			if v, err := s.hub.metric("camhub_warm_starts_total"); err == nil {
				lv.warmStarts = v
			}
		}
		if sent := pub.frames.Load() - pubFrames0; n > 0 && sent > 0 {
			lv.delivered = 100 * float64(w.frames.Load()-frames0) / float64(uint64(n)*sent)
		}
		return lv
	}

	sleepCtx(ctx, time.Second) // the publisher's media reaches the server
	res.base = measure(0)
	say("  %s, publisher alone: CPU %.1f %% of a core, RSS %.0f MB", s.name, res.base.cpu, float64(res.base.rssKB)/1024)
	for _, n := range o.Levels {
		actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		t0 := time.Now()
		err := w.addViewers(actx, api, s.whep, &viewers, clients, n)
		cancel()
		if err != nil {
			return fmt.Errorf("adding viewers (%d of %d open): %w", len(viewers), n, err)
		}
		lv := measure(n)
		res.levels = append(res.levels, lv)
		say("  %s, %d viewers (added in %.0f s): p50/p95/p99 %.1f/%.1f/%.1f ms, delivered %.1f %%; CPU (%% of one core) %s %.1f, bench process %.0f, machine %.0f of %d00; RSS %.0f MB",
			s.name, n, time.Since(t0).Seconds(), lv.lat.P(50), lv.lat.P(95), lv.lat.P(99), lv.delivered, s.name, lv.cpu, lv.selfCPU, lv.machine,
			runtime.NumCPU(), float64(lv.rssKB)/1024)
		if lv.warmStarts >= 0 {
			say("  camhub: %.0f of the %d viewers so far started warm (camhub_warm_starts_total)", lv.warmStarts, n)
		}
	}
	w.closeViewers(viewers)
	closed = true
	sleepCtx(ctx, o.After)
	res.after = o.After
	res.rssAfterKB, _, _ = memKB(s.pid)
	res.load = loadAvg()
	say("  %s, %s after the last viewer left: RSS %.0f MB (publisher alone %.0f MB)", s.name, o.After, float64(res.rssAfterKB)/1024, float64(res.base.rssKB)/1024)
	if n := w.unkeyed.Load(); n > 0 {
		say("  %s: %d complete frames had no known send time", s.name, n)
	}
	return ctx.Err()
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
