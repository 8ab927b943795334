package audio

import (
	"context"
	"fmt"
	"sync"

	"github.com/camagent/camagent/device"
)

// Defaults of the synthetic microphone: a 440 Hz sine at 0.3 of full scale.
const (
	DefaultToneFrequency = 440.0
	DefaultToneAmplitude = 0.3
)

// Tone is a synthetic device.Microphone that produces a continuous sine wave, paced in
// real time (ReadFrame returns each 20 ms frame at its due time on a drift-free
// schedule) unless built with Unpaced.
type Tone struct {
	freq, amp float64

	mu    sync.Mutex // serialises ReadFrame (phase, pacer)
	phase float64
	pacer *Pacer

	closeOnce sync.Once
	closed    chan struct{}
}

var _ device.Microphone = (*Tone)(nil)

// ToneOption configures a Tone.
type ToneOption func(*Tone)

// Unpaced makes ReadFrame return at once instead of in real time (for tests and
// offline processing).
func Unpaced() ToneOption { return func(t *Tone) { t.pacer = nil } }

// NewTone returns a microphone producing a sine of freq Hz with peak amplitude
// amplitude (a fraction of full scale). A freq or amplitude of 0 or less takes the
// default (DefaultToneFrequency, DefaultToneAmplitude); amplitude is capped at 1.
func NewTone(freq, amplitude float64, opts ...ToneOption) *Tone {
	if freq <= 0 {
		freq = DefaultToneFrequency
	}
	if amplitude <= 0 {
		amplitude = DefaultToneAmplitude
	}
	amplitude = min(amplitude, 1)
	t := &Tone{
		freq:   freq,
		amp:    amplitude,
		pacer:  NewPacer(device.FrameDuration),
		closed: make(chan struct{}),
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Frequency returns the tone's frequency in Hz.
func (t *Tone) Frequency() float64 { return t.freq }

// Amplitude returns the tone's peak amplitude as a fraction of full scale.
func (t *Tone) Amplitude() float64 { return t.amp }

// ReadFrame fills pcm (device.FrameSamples samples) with the next 20 ms of the tone.
// When paced it blocks until the frame is due; it returns ctx.Err() if ctx ends first
// and ErrClosed after Close.
func (t *Tone) ReadFrame(ctx context.Context, pcm []int16) error {
	if len(pcm) < device.FrameSamples {
		return fmt.Errorf("audio: tone: frame buffer holds %d samples, need %d", len(pcm), device.FrameSamples)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.closed:
		return ErrClosed
	default:
	}
	if t.pacer != nil {
		if err := t.pacer.WaitDone(ctx, t.closed); err != nil {
			return err
		}
	} else if err := ctx.Err(); err != nil {
		return err
	}
	t.phase = Sine(pcm[:device.FrameSamples], device.SampleRate, t.freq, t.amp, t.phase)
	return nil
}

// Close ends the tone; a pending ReadFrame returns ErrClosed.
func (t *Tone) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}
