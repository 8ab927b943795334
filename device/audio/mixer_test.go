package audio

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
)

func constant(v int16) []int16 {
	pcm := make([]int16, device.FrameSamples)
	for i := range pcm {
		pcm[i] = v
	}
	return pcm
}

func TestMixerSilenceWhenEmpty(t *testing.T) {
	m := NewMixer()
	out := constant(123)
	if n := m.Mix(out); n != 0 {
		t.Fatalf("active = %d", n)
	}
	for i, v := range out {
		if v != 0 {
			t.Fatalf("out[%d] = %d, want silence", i, v)
		}
	}
}

func TestMixerSumsTones(t *testing.T) {
	m := NewMixer()
	a, b := tone(device.FrameSamples, 440, 0.2), tone(device.FrameSamples, 1000, 0.2)
	m.Push("alice", a)
	m.Push("bob", b)
	out := make([]int16, device.FrameSamples)
	if n := m.Mix(out); n != 2 {
		t.Fatalf("active = %d, want 2", n)
	}
	for i := range out {
		if want := a[i] + b[i]; out[i] != want {
			t.Fatalf("out[%d] = %d, want %d", i, out[i], want)
		}
	}
	if pa, pb := Goertzel(out, device.SampleRate, 440), Goertzel(out, device.SampleRate, 1000); math.Abs(10*math.Log10(pa/pb)) > 0.5 {
		t.Fatalf("tones unbalanced: %.0f vs %.0f", pa, pb)
	}
	// Both queues are now empty: silence, and an underrun counted for each source.
	if n := m.Mix(out); n != 0 || RMS(out) != 0 {
		t.Fatalf("second mix: active %d, RMS %.1f", n, RMS(out))
	}
	if s := m.Stats(); s.Underruns != 2 || s.Sources != 2 || s.Frames != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMixerSaturates(t *testing.T) {
	m := NewMixer()
	m.Push("a", constant(30000))
	m.Push("b", constant(10000))
	m.Push("c", constant(-30000))
	m.Push("d", constant(-30000))
	m.Push("e", constant(-30000))
	out := make([]int16, device.FrameSamples)
	m.Mix(out) // 30000+10000-90000 = -50000 → -32768
	if out[0] != math.MinInt16 {
		t.Fatalf("negative clip: %d", out[0])
	}
	m.Push("a", constant(30000))
	m.Push("b", constant(10000))
	m.Mix(out)
	if out[0] != math.MaxInt16 {
		t.Fatalf("positive clip: %d", out[0])
	}
}

func TestMixerBoundsQueueDroppingOldest(t *testing.T) {
	m := NewMixer(MixerDepth(3))
	for i := 1; i <= 5; i++ {
		m.Push("u", constant(int16(i)))
	}
	if q := m.Queued("u"); q != 3*device.FrameSamples {
		t.Fatalf("queued %d, want 3 frames", q)
	}
	if s := m.Stats(); s.DroppedSamples != 2*device.FrameSamples {
		t.Fatalf("dropped %d samples, want 2 frames", s.DroppedSamples)
	}
	out := make([]int16, device.FrameSamples)
	for _, want := range []int16{3, 4, 5, 0} {
		m.Mix(out)
		if out[0] != want || out[device.FrameSamples-1] != want {
			t.Fatalf("got frame %d…%d, want %d", out[0], out[device.FrameSamples-1], want)
		}
	}
	// A single push larger than the queue keeps its newest samples.
	big := make([]int16, 4*device.FrameSamples)
	for i := range big {
		big[i] = int16(i / device.FrameSamples)
	}
	m.Push("u", big)
	m.Mix(out)
	if out[0] != 1 {
		t.Fatalf("after oversized push got %d, want 1", out[0])
	}
}

func TestMixerPartialFramesAndOddSizes(t *testing.T) {
	m := NewMixer()
	m.Push("u", constant(7)[:500])
	out := make([]int16, device.FrameSamples)
	m.Mix(out)
	if out[499] != 7 || out[500] != 0 {
		t.Fatalf("partial frame: %d %d", out[499], out[500])
	}
	// Mixing into a buffer larger than a frame works too.
	m.Push("u", constant(1))
	m.Push("u", constant(2))
	long := make([]int16, 2*device.FrameSamples)
	m.Mix(long)
	if long[0] != 1 || long[device.FrameSamples] != 2 {
		t.Fatalf("long mix: %d %d", long[0], long[device.FrameSamples])
	}
}

func TestMixerRemove(t *testing.T) {
	m := NewMixer()
	m.Push("a", constant(100))
	m.Push("b", constant(20))
	m.Remove("a")
	m.Remove("nobody")
	out := make([]int16, device.FrameSamples)
	m.Mix(out)
	if out[0] != 20 {
		t.Fatalf("after removing a: %d, want 20", out[0])
	}
	if keys := m.Keys(); len(keys) != 1 || keys[0] != "b" {
		t.Fatalf("keys %v", keys)
	}
	in := m.Input("c")
	if err := in.WriteFrame(constant(5)); err != nil {
		t.Fatal(err)
	}
	if m.Queued("c") != device.FrameSamples {
		t.Fatal("Input did not push")
	}
	in.Close()
	if m.Queued("c") != 0 || len(m.Keys()) != 1 {
		t.Fatal("closing Input did not remove the source")
	}
	if err := in.WriteFrame(constant(5)); err == nil {
		t.Fatal("write after Close accepted")
	}
}

func TestMixerConcurrent(t *testing.T) {
	m := NewMixer()
	var wg sync.WaitGroup
	for u := 0; u < 4; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint("user", u)
			for i := 0; i < 200; i++ {
				m.Push(key, constant(1))
				if i%50 == 49 {
					m.Remove(key)
				}
			}
		}()
	}
	out := make([]int16, device.FrameSamples)
	for i := 0; i < 200; i++ {
		if n := m.Mix(out); n > 4 || out[0] > 4 {
			t.Fatalf("active %d, sample %d", n, out[0])
		}
		m.Stats()
		m.Keys()
	}
	wg.Wait()
}

// recorder is a device.Speaker that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	frames [][]int16
}

func (r *recorder) WriteFrame(pcm []int16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, append([]int16(nil), pcm...))
	if len(r.frames)%2 == 0 {
		return fmt.Errorf("every other write fails")
	}
	return nil
}

func (r *recorder) Close() error { return nil }

func TestMixerRun(t *testing.T) {
	m := NewMixer()
	spk := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	m.Push("u", constant(9))
	start := time.Now()
	if err := m.Run(ctx, spk); err != nil {
		t.Fatalf("Run: %v", err)
	}
	elapsed := time.Since(start)
	spk.mu.Lock()
	defer spk.mu.Unlock()
	// Paced: one frame at start and one per 20 ms after, never more (a loaded machine
	// may see the deadline late, hence the measured time), and a few at least.
	if n, most := len(spk.frames), int(elapsed/device.FrameDuration)+1; n < 2 || n > most {
		t.Fatalf("wrote %d frames in %v (at most %d)", n, elapsed, most)
	}
	if spk.frames[0][0] != 9 || spk.frames[1][0] != 0 {
		t.Fatalf("frames: %d then %d", spk.frames[0][0], spk.frames[1][0])
	}
}
