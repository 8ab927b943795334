package audio

import (
	"time"

	"github.com/camagent/camagent/device"
)

// Phase alignment. A source's frames arrive at their sender's pace, at some phase of the
// mixer's 20 ms ticks; a frame that lands just after a tick waits almost a whole frame for
// the next one, and that wait stays for the whole call (the speaker's buffer keeps what it
// was given). Every window the mixer measures, for each source, how long the last sample a
// mix needed had already been queued beyond the queue standing behind it (the source's
// phase slack), and moves its ticks earlier by the least slack of all sources, less
// phaseMargin. So that the speaker's buffer does not grow by what the ticks moved, the
// frame mixed at the moved tick is written shorter by as much: a cut of at most one frame,
// once, made in a quiet frame when one comes within quietWait.
const (
	phaseMargin = 6 * time.Millisecond
	// minAdvance: smaller slack is not worth a cut.
	minAdvance = 2 * time.Millisecond
	// quietPeak is the largest |sample| of a frame that counts as quiet; quietWait bounds
	// how long a pending advance waits for a quiet frame.
	quietPeak = 1000
	quietWait = 5 * time.Second
	// maxStamps bounds a source's push-time record; the oldest are merged into the next,
	// which only makes the slack look smaller.
	maxStamps = 32
)

// stamp records that the samples up to end (a count of samples ever written to a ring)
// were pushed at at.
type stamp struct {
	at  time.Time
	end int64
}

// samplesDuration is how long n samples play.
func samplesDuration(n int) time.Duration {
	return time.Duration(n) * time.Second / device.SampleRate
}

// stampWrite records n samples pushed at now.
func (r *ring) stampWrite(now time.Time, n int) {
	r.written += int64(n)
	if len(r.stamps) == maxStamps {
		r.stamps = append(r.stamps[:0], r.stamps[1:]...)
	}
	r.stamps = append(r.stamps, stamp{at: now, end: r.written})
}

// took records that n of the oldest samples were consumed (mixed or dropped).
func (r *ring) took(n int) {
	r.consumed += int64(n)
	k := 0
	for k < len(r.stamps) && r.stamps[k].end <= r.consumed {
		k++
	}
	if k > 0 {
		r.stamps = append(r.stamps[:0], r.stamps[k:]...)
	}
}

// slackBefore returns how long the need-th oldest queued sample has been queued at now,
// zero if it is not queued (the mix will underrun).
func (r *ring) slackBefore(now time.Time, need int) time.Duration {
	if r.n < need || need <= 0 {
		return 0
	}
	idx := r.consumed + int64(need) - 1
	for _, s := range r.stamps {
		if s.end > idx {
			return max(now.Sub(s.at), 0)
		}
	}
	return 0
}

// notePhase records one mix's phase slack: the slack measured before the mix less the
// time the queue left standing after it holds, which the jitter buffer manages on its own.
func (r *ring) notePhase() {
	r.phase = min(r.phase, max(r.slack-samplesDuration(r.n), 0))
}

// endPhaseWindow is called by Mix after every mix: at the end of a window it sets a
// pending advance from the least phase slack of the sources present for the whole window.
func (m *Mixer) endPhaseWindow(now time.Time) {
	m.phaseMixes++
	if m.phaseMixes < windowMixes {
		return
	}
	least, any := time.Duration(1<<62), false
	for _, r := range m.sources {
		if r.wholeWindow {
			least, any = min(least, r.phase), true
		}
		r.phase, r.wholeWindow = time.Duration(1<<62), true
	}
	m.phaseMixes = 0
	if !any || m.advance > 0 {
		return
	}
	if adv := least - phaseMargin; adv >= minAdvance {
		m.advance = min(adv, device.FrameDuration-phaseMargin)
		m.advanceSince = now
	}
}

// takeAdvance returns the pending advance if it is to be applied after the frame just
// mixed (quiet, or the wait is over), and clears it.
func (m *Mixer) takeAdvance(frame []int16, now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.advance <= 0 {
		return 0
	}
	if peak(frame) > quietPeak && now.Sub(m.advanceSince) < quietWait {
		return 0
	}
	adv := m.advance
	m.advance = 0
	m.stats.Advances++
	m.stats.Advanced += adv
	return adv
}

func peak(pcm []int16) int {
	p := 0
	for _, v := range pcm {
		p = max(p, abs(int(v)))
	}
	return p
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
