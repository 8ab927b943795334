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

// A concealed source's gaps are filled by its concealer, up to maxConcealFrames in a row
// and only once it has been heard; a plain source's gaps stay silent.
func TestMixerConceals(t *testing.T) {
	m := NewMixer()
	calls := 0
	conceal := func(pcm []int16) bool {
		calls++
		for i := range pcm {
			pcm[i] = 7
		}
		return true
	}
	in := m.ConcealedInput("c", conceal)
	m.Push("plain", nil) // present, never heard
	out := make([]int16, device.FrameSamples)
	if m.Mix(out); calls != 0 || RMS(out) != 0 {
		t.Fatalf("concealed %d times before the source was heard (RMS %.0f)", calls, RMS(out))
	}
	in.WriteFrame(constant(100))
	m.Push("plain", constant(100))
	if m.Mix(out); out[0] != 200 {
		t.Fatalf("mixed %d, want 200", out[0])
	}
	for i := 1; i <= maxConcealFrames+2; i++ {
		m.Mix(out)
		want := int16(7)
		if i > maxConcealFrames {
			want = 0
		}
		if out[0] != want || out[len(out)-1] != want {
			t.Fatalf("gap frame %d: %d…%d, want %d (the plain source silent)", i, out[0], out[len(out)-1], want)
		}
	}
	// Audio again: it plays, and a new gap is concealed again.
	in.WriteFrame(constant(100))
	if m.Mix(out); out[0] != 100 {
		t.Fatalf("after the gap: %d, want 100", out[0])
	}
	if m.Mix(out); out[0] != 7 {
		t.Fatalf("a new gap: %d, want the concealment", out[0])
	}
	if s := m.Stats(); s.Concealed != maxConcealFrames+1 || calls != maxConcealFrames+1 {
		t.Fatalf("concealed %d (%d calls), want %d", s.Concealed, calls, maxConcealFrames+1)
	}
}

// TestJitterBufferOneLatePacket: a single late packet in a window (concealed for an Opus
// source) does not grow the target; the frame it leaves standing is dropped at the end of the
// next window.
func TestJitterBufferOneLatePacket(t *testing.T) {
	m := NewMixer()
	once := func(i int) int {
		switch i {
		case 10:
			return 0 // late
		case 11:
			return 2 // with the next one
		}
		return 1
	}
	if u := play(m, windowMixes, once); u != 1 {
		t.Fatalf("%d underruns, want the one", u)
	}
	if got := m.Target("u"); got != 0 {
		t.Fatalf("target %d after one late packet, want 0", got)
	}
	play(m, windowMixes, func(int) int { return 1 })
	if s, q := m.Stats(), m.Queued("u"); s.DroppedSamples != device.FrameSamples || q != 0 {
		t.Fatalf("dropped %d, queued %d after the next window, want the standing frame dropped", s.DroppedSamples, q)
	}
}
