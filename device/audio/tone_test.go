package audio

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
)

func TestToneUnpaced(t *testing.T) {
	mic := NewTone(0, 0, Unpaced())
	defer mic.Close()
	if mic.Frequency() != DefaultToneFrequency || mic.Amplitude() != DefaultToneAmplitude {
		t.Fatalf("defaults: %v Hz, %v", mic.Frequency(), mic.Amplitude())
	}
	pcm := make([]int16, 50*device.FrameSamples)
	for i := 0; i < 50; i++ {
		if err := mic.ReadFrame(context.Background(), pcm[i*device.FrameSamples:]); err != nil {
			t.Fatal(err)
		}
	}
	if f := DominantFrequency(pcm, device.SampleRate); math.Abs(f-440) > 1 {
		t.Fatalf("frequency %.2f", f)
	}
	want := 0.3 * 32767 / math.Sqrt2
	if r := RMS(pcm); math.Abs(r-want)/want > 0.01 {
		t.Fatalf("RMS %.1f, want %.1f", r, want)
	}
	// Frames join without a discontinuity: the largest step between neighbours is
	// that of a sine, 2π·f/fs·A.
	maxStep := 2 * math.Pi * 440 / device.SampleRate * 0.3 * 32767
	for i := 1; i < len(pcm); i++ {
		if d := math.Abs(float64(pcm[i]) - float64(pcm[i-1])); d > maxStep+2 {
			t.Fatalf("discontinuity at %d: step %.0f > %.0f", i, d, maxStep)
		}
	}
}

func TestTonePacedInRealTime(t *testing.T) {
	mic := NewTone(1000, 0.5)
	defer mic.Close()
	pcm := make([]int16, device.FrameSamples)
	const frames = 15
	start := time.Now()
	for i := 0; i < frames; i++ {
		if err := mic.ReadFrame(context.Background(), pcm); err != nil {
			t.Fatal(err)
		}
	}
	// The first frame is due at once, so frames-1 periods elapse (never fewer: the
	// upper bound only catches gross failures on a loaded machine).
	want := (frames - 1) * device.FrameDuration
	if got := time.Since(start); got < want || got > want+2*time.Second {
		t.Fatalf("%d frames took %v, want ≈ %v", frames, got, want)
	}
}

func TestToneHonoursContextAndClose(t *testing.T) {
	mic := NewTone(440, 0.3)
	pcm := make([]int16, device.FrameSamples)
	if err := mic.ReadFrame(context.Background(), pcm); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := mic.ReadFrame(ctx, pcm); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadFrame with cancelled context: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		time.Sleep(5 * time.Millisecond)
		mic.Close()
	}()
	go func() {
		// Read until Close ends it; most of the time is spent waiting for the next
		// frame, so Close normally lands during a wait.
		var err error
		for err == nil {
			err = mic.ReadFrame(context.Background(), pcm)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("ReadFrame after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadFrame")
	}
	if err := mic.ReadFrame(context.Background(), pcm[:10]); err == nil {
		t.Fatal("short buffer accepted")
	}
}

func TestPacerWaitHonoursContext(t *testing.T) {
	p := NewPacer(time.Hour)
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v", err)
	}
	done := make(chan struct{})
	close(done)
	if err := p.WaitDone(context.Background(), done); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitDone: %v", err)
	}
}

func TestPacerRestartsAfterStall(t *testing.T) {
	p := NewPacer(time.Millisecond)
	ctx := context.Background()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // far more than 10 periods
	start := time.Now()
	for i := 0; i < 5; i++ {
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Restarted: the first tick is immediate, then four real 1 ms periods.
	if got := time.Since(start); got < 4*time.Millisecond {
		t.Fatalf("5 ticks after a stall took %v: the pacer burst instead of restarting", got)
	}
}
