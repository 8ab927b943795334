package wav

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
)

// Microphone is a device.Microphone that plays a WAV file (converted to 48 kHz mono)
// in real time, looping at the end. It is the `wav:PATH` microphone spec.
type Microphone struct {
	samples []int16
	paced   bool

	mu    sync.Mutex // serialises ReadFrame
	pos   int
	pacer *audio.Pacer

	closeOnce sync.Once
	closed    chan struct{}
}

var _ device.Microphone = (*Microphone)(nil)

// MicrophoneOption configures a Microphone.
type MicrophoneOption func(*Microphone)

// Unpaced makes ReadFrame return at once instead of in real time (for tests).
func Unpaced() MicrophoneOption { return func(m *Microphone) { m.paced = false } }

// OpenMicrophone loads the WAV file at path (any format Parse accepts) for playback.
func OpenMicrophone(path string, opts ...MicrophoneOption) (*Microphone, error) {
	samples, rate, channels, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	samples = ToAgentFormat(samples, rate, channels)
	if len(samples) == 0 {
		return nil, fmt.Errorf("wav: %s holds no audio", path)
	}
	m := &Microphone{
		samples: samples,
		paced:   true,
		pacer:   audio.NewPacer(device.FrameDuration),
		closed:  make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	return m, nil
}

// Len returns the number of samples (at 48 kHz) in one loop of the file.
func (m *Microphone) Len() int { return len(m.samples) }

// ReadFrame fills pcm (device.FrameSamples samples) with the next 20 ms of the file,
// wrapping to its start at the end. It returns ctx.Err() if ctx ends first and
// ErrClosed after Close.
func (m *Microphone) ReadFrame(ctx context.Context, pcm []int16) error {
	if len(pcm) < device.FrameSamples {
		return fmt.Errorf("wav: microphone: frame buffer holds %d samples, need %d", len(pcm), device.FrameSamples)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
		return ErrClosed
	default:
	}
	if m.paced {
		if err := m.pacer.WaitDone(ctx, m.closed); err != nil {
			if errors.Is(err, audio.ErrClosed) {
				return ErrClosed
			}
			return err
		}
	} else if err := ctx.Err(); err != nil {
		return err
	}
	for filled := 0; filled < device.FrameSamples; {
		n := copy(pcm[filled:device.FrameSamples], m.samples[m.pos:])
		filled += n
		m.pos = (m.pos + n) % len(m.samples)
	}
	return nil
}

// Close stops playback; a pending ReadFrame returns ErrClosed.
func (m *Microphone) Close() error {
	m.closeOnce.Do(func() { close(m.closed) })
	return nil
}
