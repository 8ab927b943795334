package audio

import (
	"math"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
)

// frameOf is one frame of the tone f at amplitude a (of full scale).
func frameOf(f, a float64) []int16 {
	pcm := make([]int16, device.FrameSamples)
	for i := range pcm {
		pcm[i] = int16(a * 32767 * math.Sin(2*math.Pi*f*float64(i)/device.SampleRate))
	}
	return pcm
}

// TestDucker: a voice on the speaker ducks the microphone by the configured amount after a
// one-frame ramp, the hold keeps it ducked through the echo's tail, then it comes back; a
// quiet speaker (comfort noise) never ducks.
func TestDucker(t *testing.T) {
	clock := time.Unix(1_800_000_000, 0)
	d := NewDucker(20, 300*time.Millisecond)
	d.now = func() time.Time { return clock }
	mic := func() float64 {
		pcm := frameOf(440, 0.3)
		d.Apply(pcm)
		clock = clock.Add(device.FrameDuration)
		return DBFS(pcm)
	}
	full := DBFS(frameOf(440, 0.3))

	d.Heard(frameOf(1000, 0.001)) // −60 dBFS: not a voice
	if got := mic(); math.Abs(got-full) > 0.1 {
		t.Fatalf("a quiet speaker changed the microphone: %.1f dBFS, want %.1f", got, full)
	}
	d.Heard(frameOf(1000, 0.3))
	mic() // the ramp down
	if got := mic(); math.Abs(got-(full-20)) > 0.5 {
		t.Fatalf("ducked microphone at %.1f dBFS, want %.1f", got, full-20)
	}
	// The voice stops: still ducked within the hold (the frames above took 40 ms)...
	clock = clock.Add(200 * time.Millisecond)
	if got := mic(); math.Abs(got-(full-20)) > 0.5 || !d.Ducking() {
		t.Fatalf("within the hold the microphone is at %.1f dBFS, want %.1f", got, full-20)
	}
	// ...and back to full level after it (one ramp frame between).
	clock = clock.Add(100 * time.Millisecond)
	mic()
	if got := mic(); math.Abs(got-full) > 0.1 || d.Ducking() {
		t.Fatalf("after the hold the microphone is at %.1f dBFS, want %.1f", got, full)
	}
}
