package bench

import (
	"fmt"
	"math"
	"runtime"
	"strings"
)

const (
	peersSection    = "8 side by side (1 WHIP publisher → N WHEP viewers; camhub, go2rtc, MediaMTX in one run)"
	peersOwnSection = "8 side by side: the peers' own figures (same run, same clients)"
)

// peerMetric is one figure measured for every server at a level.
type peerMetric struct {
	id, name, unit string
	ratio          float64 // camhub's target: ratio × the better peer's value
	value          func(base, lv peerLevel) float64
}

var peerMetrics = []peerMetric{
	{"p50", "forwarding p50", "ms", 0.7, func(_, lv peerLevel) float64 { return lv.lat.P(50) }},
	{"p95", "forwarding p95", "ms", 0.7, func(_, lv peerLevel) float64 { return lv.lat.P(95) }},
	{"p99", "forwarding p99", "ms", 0.7, func(_, lv peerLevel) float64 { return lv.lat.P(99) }},
	{"cpu", "server CPU", "%core", 0.7, func(_, lv peerLevel) float64 { return lv.cpu }},
	{"rss_per_viewer", "server RSS per viewer", "MB", 0.5, func(base, lv peerLevel) float64 {
		return float64(lv.rssKB-base.rssKB) / 1024 / float64(lv.n)
	}},
}

// addPeerFigures adds camhub's figures, each with its target (issue 17: 0.7× or 0.5× the
// better measured peer) and the peers' values beside it, and the peers' own figures.
func addPeerFigures(r *Results, results []peerResult, o peerOptions) {
	var hub *peerResult
	var peers []*peerResult
	for i := range results {
		if results[i].id == "camhub" {
			hub = &results[i]
		} else {
			peers = append(peers, &results[i])
		}
	}
	if hub == nil {
		return
	}
	// peersCol is the peers' column of a camhub figure; best is the better measured peer's value.
	peersCol := func(v func(p *peerResult) (float64, bool), unit string) (string, float64) {
		var parts []string
		best := math.NaN()
		for _, p := range peers {
			x, ok := v(p)
			if p.skipped != "" || !ok || math.IsNaN(x) {
				parts = append(parts, p.name+" —")
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %s", p.name, num(x)))
			if math.IsNaN(best) || x < best {
				best = x
			}
		}
		return strings.Join(parts, " / ") + " " + unit, best
	}
	target := func(ratio, best float64) float64 {
		if math.IsNaN(best) || best <= 0 {
			return 0
		}
		return ratio * best
	}
	fig := func(p *peerResult, id, name, unit string, value float64, n int, note string) Figure {
		f := Figure{ID: "peers." + p.id + "." + id, Section: peersOwnSection, Name: p.name + ": " + name, Unit: unit, Value: value, N: n, Note: note}
		if p.id == "camhub" {
			f.Section, f.Name = peersSection, "camhub: "+name
		}
		if p.skipped != "" {
			f.Skipped, f.Value, f.N, f.Note = p.skipped, 0, 0, ""
		}
		return f
	}

	for _, n := range o.Levels {
		for _, m := range peerMetrics {
			id, name := fmt.Sprintf("n%d.%s", n, m.id), fmt.Sprintf("N=%d: %s", n, m.name)
			valueOf := func(p *peerResult) (float64, bool) {
				lv, ok := p.level(n)
				if !ok {
					return 0, false
				}
				return m.value(p.base, lv), true
			}
			for _, p := range append([]*peerResult{hub}, peers...) {
				v, ok := valueOf(p)
				lv, _ := p.level(n)
				note := ""
				switch {
				case !ok && p.skipped == "":
					v, note = math.NaN(), "level not reached"
				case m.id == "p99":
					note = fmt.Sprintf("delivered %.1f %% of frames; machine busy %.0f %% of %d00 %%", lv.delivered, lv.machine, runtime.NumCPU())
				case m.id == "cpu":
					note = fmt.Sprintf("bench process (publisher, %d viewers) %.0f %%core", n, lv.selfCPU)
				case m.id == "rss_per_viewer":
					note = fmt.Sprintf("RSS %.0f MB", float64(lv.rssKB)/1024)
				case m.id == "p50" && lv.warmStarts >= 0:
					note = fmt.Sprintf("%.0f of the %d viewers started warm (camhub_warm_starts_total)", lv.warmStarts, n)
				}
				f := fig(p, id, name, m.unit, v, 0, note)
				if m.unit == "ms" {
					f.N = len(lv.lat)
				}
				if p == hub {
					col, best := peersCol(valueOf, m.unit)
					f.Peers, f.Target = col, target(m.ratio, best)
				}
				r.Add(f)
			}
		}
	}
	// Publisher alone, and the memory given back after the viewers left.
	for _, p := range append([]*peerResult{hub}, peers...) {
		r.Add(fig(p, "publisher.cpu", "CPU, publisher alone", "%core", p.base.cpu, 0, ""))
		r.Add(fig(p, "publisher.rss", "RSS, publisher alone", "MB", float64(p.base.rssKB)/1024, 0, ""))
		f := fig(p, "rss_after", fmt.Sprintf("RSS %s after the last viewer left", o.After), "MB", float64(p.rssAfterKB)/1024, 0,
			fmt.Sprintf("%.2f× its publisher-alone RSS; load average %s", float64(p.rssAfterKB)/math.Max(1, float64(p.base.rssKB)), p.load))
		if p == hub {
			f.Target = 2 * float64(p.base.rssKB) / 1024 // issue 17: within 2× of the publisher-alone RSS
			f.Peers, _ = peersCol(func(q *peerResult) (float64, bool) { return float64(q.rssAfterKB) / 1024, q.rssAfterKB > 0 }, "MB")
		}
		r.Add(f)
	}
}
