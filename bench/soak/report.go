package main

import (
	"fmt"
	"math"

	"github.com/camagent/camagent/device"
)

// report keeps each minute's figures and the counters' marks between minutes.
type report struct {
	o     options
	chans []*channel
	marks []chanMarks

	video, audio []tally // per minute
	talkSent     []int64
	rss, cpu     []float64
	goroutines   []int
	broken       []int64 // sessions broken by the end of each minute
	loads        []string
}

type chanMarks struct {
	video, audio [viewersPerChannel]viewerMark
	vPub, aPub   int64
	talk         int64
}

func newReport(o options, chans []*channel) *report {
	r := &report{o: o, chans: chans, marks: make([]chanMarks, len(chans))}
	for i := range r.marks {
		m := &r.marks[i]
		m.vPub, m.aPub = -1, -1
		for k := range viewersPerChannel {
			m.video[k].high, m.audio[k].high = -1, -1
		}
	}
	return r
}

// mark starts the first minute: what came during the set-up is not counted.
func (r *report) mark() {
	r.take()
}

// take returns the delivery since the last call and moves the marks.
func (r *report) take() (video, audio tally, talk int64, broken int64) {
	for i, ch := range r.chans {
		m := &r.marks[i]
		video.add(minute(counts(&ch.video), m.video[:], &m.vPub))
		if r.o.mic != "null" {
			audio.add(minute(counts(&ch.audio), m.audio[:], &m.aPub))
		}
		sent := ch.talkSent.Load()
		talk += sent - m.talk
		m.talk = sent
		broken += ch.broken.Load()
	}
	return video, audio, talk, broken
}

func counts(c *[viewersPerChannel]seqCount) []*seqCount {
	out := make([]*seqCount, len(c))
	for i := range c {
		out[i] = &c[i]
	}
	return out
}

// minuteLine takes and prints minute m's figures; prev and now are the hub at its start
// and end.
func (r *report) minuteLine(m int, prev, now sample) {
	video, audio, talk, broken := r.take()
	secs := now.at.Sub(prev.at).Seconds()
	cpu := 100 * float64(now.cpuTicks-prev.cpuTicks) / clockTick / secs
	self := 100 * float64(now.selfTicks-prev.selfTicks) / clockTick / secs
	talkWant := float64(len(r.chans)) * secs / device.FrameDuration.Seconds()
	r.video, r.audio, r.talkSent = append(r.video, video), append(r.audio, audio), append(r.talkSent, talk)
	r.rss, r.cpu, r.goroutines = append(r.rss, now.rssMB), append(r.cpu, cpu), append(r.goroutines, now.goroutines)
	r.broken, r.loads = append(r.broken, broken), append(r.loads, now.load)
	rate := func(t tally) float64 { return float64(t.expected) / viewersPerChannel / float64(len(r.chans)) / secs }
	fmt.Printf("minute %2d: delivery video %7.3f %% (%d/%d), audio %7.3f %% (%d/%d); each device sent %.1f video, %.1f audio packets/s; talkers sent %d (%.1f %% of real time); hub RSS %.1f MB, goroutines %d, CPU %.0f %% of a core, users %d; sessions broken %d; clients' process CPU %.0f %%, RSS %.0f MB; UDP receive-buffer drops (machine) %d; load %s\n",
		m, video.percent(), video.recv, video.expected, audio.percent(), audio.recv, audio.expected, rate(video), rate(audio), talk, 100*float64(talk)/talkWant,
		now.rssMB, now.goroutines, cpu, now.users, broken, self, now.selfRSSMB, now.udpDrops-prev.udpDrops, now.load)
}

// summary prints the run against the bars and returns an error when delivery or a session
// failed.
func (r *report) summary() error {
	fmt.Printf("\nsoak summary: %d channels (%d agents, %d viewers, %d talkers), %d minutes of %v\n",
		len(r.chans), len(r.chans), viewersPerChannel*len(r.chans), len(r.chans), len(r.video), r.o.minute)
	var fails []string
	worst := func(ts []tally) (float64, int) {
		w, at := math.Inf(1), 0
		for i, t := range ts {
			if p := t.percent(); p < w {
				w, at = p, i+1
			}
		}
		return w, at
	}
	for _, k := range []struct {
		name string
		ts   []tally
	}{{"video", r.video}, {"device audio", r.audio}} {
		if k.name == "device audio" && r.o.mic == "null" {
			continue
		}
		w, at := worst(k.ts)
		ok := w >= deliveryBar
		fmt.Printf("  %-13s delivery: worst minute %.3f %% (minute %d); bar ≥ %.1f %% every minute: %s\n", k.name, w, at, deliveryBar, pass(ok))
		if !ok {
			fails = append(fails, fmt.Sprintf("%s delivery %.3f %% in minute %d", k.name, w, at))
		}
	}
	var sent, heard, lost int64
	tracks := 0
	for _, ch := range r.chans {
		sent += ch.talkSent.Load()
		ch.heard.mu.Lock()
		heard, lost, tracks = heard+ch.heard.packets, lost+ch.heard.lost, tracks+ch.heard.tracks
		ch.heard.mu.Unlock()
	}
	fmt.Printf("  talker audio at the agents (whole run, the agents' own counts of %d tracks): %d received, %d lost in sequence gaps, of %d sent (%.3f %%)\n",
		tracks, heard, lost, sent, 100*float64(heard)/math.Max(1, float64(sent)))
	if len(r.rss) > 1 {
		rd, gd := spread(r.rss), spread(floats(r.goroutines))
		fmt.Printf("  hub RSS after minute 1: %.1f MB, then %.1f–%.1f MB (max %+.1f %%); bar within %.0f %%: %s\n",
			r.rss[0], minOf(r.rss[1:]), maxOf(r.rss[1:]), rd, flatBar, pass(math.Abs(rd) <= flatBar))
		fmt.Printf("  hub goroutines after minute 1: %d, then %.0f–%.0f (max %+.1f %%); bar within %.0f %%: %s\n",
			r.goroutines[0], minOf(floats(r.goroutines[1:])), maxOf(floats(r.goroutines[1:])), gd, flatBar, pass(math.Abs(gd) <= flatBar))
	}
	fmt.Printf("  hub CPU per minute: %.0f–%.0f %% of a core; load at the end %s\n", minOf(r.cpu), maxOf(r.cpu), r.loads[len(r.loads)-1])
	if n := r.broken[len(r.broken)-1]; n > 0 {
		for _, ch := range r.chans {
			if e, ok := ch.lastErr.Load().(string); ok {
				fmt.Printf("  broken in %s: %s\n", ch.name, e)
			}
		}
		fails = append(fails, fmt.Sprintf("%d viewer streams ended before the soak did", n))
	}
	if len(fails) > 0 {
		return fmt.Errorf("below the bar: %v", fails)
	}
	fmt.Println("soak: passed")
	return nil
}

func pass(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

// spread is the largest deviation of v[1:] from v[0], in % of v[0].
func spread(v []float64) float64 {
	d := 0.0
	for _, x := range v[1:] {
		if e := 100 * (x - v[0]) / v[0]; math.Abs(e) > math.Abs(d) {
			d = e
		}
	}
	return d
}

func floats(v []int) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
