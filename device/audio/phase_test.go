package audio

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/camagent/camagent/device"
)

// timedSpeaker records every frame written and when.
type timedSpeaker struct {
	mu      sync.Mutex
	at      []time.Time
	frames  [][]int16
	samples int
}

func (s *timedSpeaker) WriteFrame(pcm []int16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = append(s.at, time.Now())
	s.frames = append(s.frames, append([]int16(nil), pcm...))
	s.samples += len(pcm)
	return nil
}

func (s *timedSpeaker) Close() error { return nil }

// delays returns, for each pushed frame k (every sample worth k+1), how long after its push
// the speaker was first given a sample of it.
func (s *timedSpeaker) delays(pushed []time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Duration, len(pushed))
	for k := range pushed {
		out[k] = -1
	}
	for i, f := range s.frames {
		for _, v := range f {
			if k := int(v) - 1; k >= 0 && k < len(pushed) && out[k] < 0 {
				out[k] = s.at[i].Sub(pushed[k])
			}
		}
	}
	return out
}

// A source whose frames land just after the mixer's ticks: each waits ~19 ms until the ticks
// move, once, to meet them (phaseMargin after each arrival); the audio cut then is what the
// ticks moved, so the speaker's buffer does not grow, and no frame is missed after.
func TestMixerAlignsTicksToArrivals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMixer()
		spk := &timedSpeaker{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- m.Run(ctx, spk) }() // ticks at 0, 20, 40 ms …
		const frames = 3 * windowMixes
		var pushed []time.Time
		time.Sleep(time.Millisecond)
		for k := range frames { // pushes at 1, 21, 41 ms …
			pcm := make([]int16, device.FrameSamples)
			for i := range pcm {
				pcm[i] = int16(k + 1)
			}
			pushed = append(pushed, time.Now())
			m.Push("u", pcm)
			time.Sleep(device.FrameDuration)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		elapsed := time.Since(start)
		d := spk.delays(pushed)
		if d[5] != device.FrameDuration-time.Millisecond {
			t.Fatalf("frame 5 reached the speaker %v after its push, want 19 ms before alignment", d[5])
		}
		for k := 2 * windowMixes; k < frames-1; k++ {
			if d[k] != phaseMargin {
				t.Fatalf("frame %d reached the speaker %v after its push, want %v once aligned (delays %v)", k, d[k], phaseMargin, d[windowMixes:windowMixes+5])
			}
		}
		st := m.Stats()
		want := device.FrameDuration - time.Millisecond - phaseMargin
		if st.Advances != 1 || st.Advanced != want {
			t.Fatalf("%d advances of %v in all, want one of %v", st.Advances, st.Advanced, want)
		}
		// The speaker got one frame per tick less what the advance cut: its buffer's level
		// is what it was.
		ticks := int(elapsed/device.FrameDuration) + 1
		if wantSamples := ticks*device.FrameSamples - int(want*device.SampleRate/time.Second); spk.samples != wantSamples {
			t.Fatalf("speaker got %d samples in %v, want %d", spk.samples, elapsed, wantSamples)
		}
		if u := st.Underruns; u > 2 {
			t.Fatalf("%d underruns: the ticks moved too far", u)
		}
	})
}
