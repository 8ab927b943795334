package audio

import (
	"math"
	"testing"

	"github.com/camagent/camagent/device"
)

func tone(n int, freq, amp float64) []int16 {
	pcm := make([]int16, n)
	Sine(pcm, device.SampleRate, freq, amp, 0)
	return pcm
}

func TestRMSAndDBFS(t *testing.T) {
	if RMS(nil) != 0 {
		t.Fatal("RMS(nil) != 0")
	}
	pcm := tone(device.SampleRate, 1000, 0.5)
	want := 0.5 * 32767 / math.Sqrt2
	if got := RMS(pcm); math.Abs(got-want) > 1 {
		t.Fatalf("RMS = %.1f, want %.1f", got, want)
	}
	if got := DBFS(pcm); math.Abs(got-(-6.02)) > 0.05 {
		t.Fatalf("DBFS = %.2f, want -6.02", got)
	}
	if !math.IsInf(DBFS(make([]int16, 10)), -1) {
		t.Fatal("DBFS(silence) is not -Inf")
	}
}

func TestGoertzel(t *testing.T) {
	pcm := tone(device.SampleRate, 1000, 0.5)
	rms := RMS(pcm)
	on := Goertzel(pcm, device.SampleRate, 1000)
	if math.Abs(10*math.Log10(on/(rms*rms))) > 0.05 {
		t.Fatalf("Goertzel(1000) = %.0f, want ≈ RMS² = %.0f", on, rms*rms)
	}
	off := Goertzel(pcm, device.SampleRate, 1100)
	if off > on*1e-6 {
		t.Fatalf("Goertzel(1100) = %.3g, want ≪ %.3g", off, on)
	}
	if Goertzel(nil, device.SampleRate, 1000) != 0 || Goertzel(pcm, 0, 1000) != 0 {
		t.Fatal("degenerate input not 0")
	}
}

func TestDominantFrequency(t *testing.T) {
	for _, tc := range []struct {
		freq float64
		n    int
	}{
		{440, device.FrameSamples}, // one 20 ms frame
		{700, device.FrameSamples},
		{1000, device.FrameSamples},
		{123.4, device.SampleRate / 4},
		{3333, device.SampleRate},
		{60, device.SampleRate / 2},
		{3990, device.SampleRate / 10},
	} {
		got := DominantFrequency(tone(tc.n, tc.freq, 0.3), device.SampleRate)
		if math.Abs(got-tc.freq) > 1 {
			t.Errorf("%.1f Hz over %d samples: got %.2f", tc.freq, tc.n, got)
		} else {
			t.Logf("%.1f Hz over %d samples: got %.3f (error %.3f Hz)", tc.freq, tc.n, got, got-tc.freq)
		}
	}
	if f := DominantFrequency(make([]int16, 960), device.SampleRate); f != 0 {
		t.Errorf("silence: got %.1f, want 0", f)
	}
	if f := DominantFrequency(nil, device.SampleRate); f != 0 {
		t.Errorf("empty: got %.1f, want 0", f)
	}
}

func TestDominantFrequencyWithNoiseAndSecondTone(t *testing.T) {
	pcm := tone(device.SampleRate/2, 700, 0.4)
	quiet := tone(device.SampleRate/2, 1500, 0.1)
	seed := uint32(1)
	for i := range pcm {
		seed = seed*1664525 + 1013904223
		noise := int32(seed>>20) - 2048 // about -42 dBFS of white noise
		pcm[i] = int16(int32(pcm[i]) + int32(quiet[i]) + noise)
	}
	if got := DominantFrequency(pcm, device.SampleRate); math.Abs(got-700) > 1 {
		t.Fatalf("got %.2f, want 700", got)
	}
}

func TestSineContinuesPhase(t *testing.T) {
	whole := tone(3*device.FrameSamples, 440, 0.3)
	parts := make([]int16, 3*device.FrameSamples)
	phase := 0.0
	for i := 0; i < 3; i++ {
		phase = Sine(parts[i*device.FrameSamples:(i+1)*device.FrameSamples], device.SampleRate, 440, 0.3, phase)
	}
	for i := range whole {
		if d := int(whole[i]) - int(parts[i]); d < -1 || d > 1 {
			t.Fatalf("sample %d: %d vs %d", i, whole[i], parts[i])
		}
	}
}

func BenchmarkDominantFrequencyFrame(b *testing.B) {
	pcm := tone(device.FrameSamples, 440, 0.3)
	for b.Loop() {
		DominantFrequency(pcm, device.SampleRate)
	}
}
