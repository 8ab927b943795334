package audio

import (
	"testing"

	"github.com/camagent/camagent/device"
)

// play runs ticks 20 ms mixes; before mix i, arrivals(i) frames of source "u" arrive.
// It returns the underruns counted during the run.
func play(m *Mixer, ticks int, arrivals func(i int) int) uint64 {
	before := m.Stats().Underruns
	out := make([]int16, device.FrameSamples)
	for i := range ticks {
		for range arrivals(i) {
			m.Push("u", constant(1))
		}
		m.Mix(out)
	}
	return m.Stats().Underruns - before
}

func TestJitterBufferDropsStandingQueue(t *testing.T) {
	m := NewMixer()
	// A burst of three frames, then one frame per tick: two frames stand in the queue
	// after every mix, 40 ms of delay that no jitter needs.
	steady := func(i int) int {
		if i == 0 {
			return 3
		}
		return 1
	}
	if u := play(m, windowMixes-1, steady); u != 0 {
		t.Fatalf("%d underruns while steady", u)
	}
	if q := m.Queued("u"); q != 2*device.FrameSamples {
		t.Fatalf("queued %d before the window ends, want 2 frames", q)
	}
	play(m, 1, func(int) int { return 1 })
	if q := m.Queued("u"); q != 0 {
		t.Fatalf("queued %d after the window, want the standing 2 frames dropped", q)
	}
	if s := m.Stats(); s.DroppedSamples != 2*device.FrameSamples {
		t.Fatalf("dropped %d samples, want 2 frames", s.DroppedSamples)
	}
	if u := play(m, 3*windowMixes, func(int) int { return 1 }); u != 0 {
		t.Fatalf("%d underruns after the drop", u)
	}
}

func TestJitterBufferGrowsOnLateArrivalAndShrinksWhenCalm(t *testing.T) {
	m := NewMixer()
	// Every 10th packet is two ticks late: it arrives with the two after it.
	jittery := func(i int) int {
		switch i % 10 {
		case 4, 5:
			return 0
		case 6:
			return 3
		}
		return 1
	}
	if u := play(m, windowMixes, jittery); u == 0 {
		t.Fatal("no underrun before the buffer adapted; the pattern tests nothing")
	}
	if got := m.Target("u"); got != device.FrameSamples {
		t.Fatalf("target %d after a window with underruns, want 1 frame", got)
	}
	// The late packet and its successors leave slack that absorbs the next late one:
	// it is used (the queue runs empty in the gap), so it is kept, not dropped.
	if u := play(m, (calmWindows-1)*windowMixes, jittery); u != 0 {
		t.Fatalf("%d underruns after adapting", u)
	}
	if s := m.Stats(); s.DroppedSamples != 0 {
		t.Fatalf("dropped %d samples of slack the jitter uses", s.DroppedSamples)
	}
	if got := m.Target("u"); got != device.FrameSamples {
		t.Fatalf("target %d after %d calm windows, want still 1 frame", got, calmWindows-1)
	}
	play(m, windowMixes, jittery)
	if got := m.Target("u"); got != 0 {
		t.Fatalf("target %d after %d calm windows, want 0", got, calmWindows)
	}
	// Calm arrival: the slack now only delays, and goes at the end of the next window.
	if u := play(m, windowMixes, func(int) int { return 1 }); u != 0 {
		t.Fatalf("%d underruns while calm", u)
	}
	if s, q := m.Stats(), m.Queued("u"); s.DroppedSamples != 2*device.FrameSamples || q != 0 {
		t.Fatalf("dropped %d samples, queued %d, want the 2 standing frames dropped", s.DroppedSamples, q)
	}
}

func TestJitterBufferTargetBoundedByDepth(t *testing.T) {
	m := NewMixer(MixerDepth(3))
	// A source that stops and starts: underruns in every window.
	bursty := func(i int) int {
		if i%25 == 0 {
			return 3
		}
		return 0
	}
	play(m, 10*windowMixes, bursty)
	if got := m.Target("u"); got != 2*device.FrameSamples {
		t.Fatalf("target %d, want the bound of depth-1 = 2 frames", got)
	}
}
