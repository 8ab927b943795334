package audio

import (
	"math"
	"sync/atomic"
	"time"
)

// VoiceRMS is the speaker level (RMS, int16 full scale 32767) above which a Ducker counts a
// frame as someone talking: −40 dBFS, well above Opus's comfort noise and the silence
// concealment plays.
const VoiceRMS = 327

// Ducker is a simple half-duplex echo suppressor for a device whose microphone hears its
// own speaker: while a remote voice plays (and for Hold after, the room's echo), the
// microphone is attenuated. Gain changes are ramped over one frame, so ducking never
// clicks. Heard is called with every frame sent to the speaker, Apply with every microphone
// frame, each from one goroutine.
type Ducker struct {
	gain float64       // linear, applied while ducked
	hold time.Duration // ducking continues this long after the last voice frame
	now  func() time.Time

	lastVoice atomic.Int64 // unix nanoseconds of the last loud speaker frame
	cur       float64      // the gain the last Apply ended at (Apply's goroutine only)
}

// NewDucker attenuates the microphone by db decibels (a positive number: 20 is a tenth of
// the amplitude) while the speaker plays a voice and for hold after.
func NewDucker(db float64, hold time.Duration) *Ducker {
	return &Ducker{gain: math.Pow(10, -math.Abs(db)/20), hold: hold, now: time.Now, cur: 1}
}

// Heard notes a frame sent to the speaker.
func (d *Ducker) Heard(frame []int16) {
	if RMS(frame) >= VoiceRMS {
		d.lastVoice.Store(d.now().UnixNano())
	}
}

// Ducking reports whether the microphone is attenuated now.
func (d *Ducker) Ducking() bool {
	last := d.lastVoice.Load()
	return last != 0 && d.now().Sub(time.Unix(0, last)) <= d.hold
}

// Apply attenuates a microphone frame in place while ducking, ramping from the previous
// frame's gain to this one's.
func (d *Ducker) Apply(mic []int16) {
	target := 1.0
	if d.Ducking() {
		target = d.gain
	}
	if d.cur == 1 && target == 1 {
		return
	}
	step := (target - d.cur) / float64(len(mic))
	g := d.cur
	for i, s := range mic {
		g += step
		mic[i] = int16(math.Round(float64(s) * g))
	}
	d.cur = target
}
