// Package synth is a synthetic camera: a device.VideoSource that draws a test picture
// in real time and encodes it with the lossless encoder in device/h264, so the whole
// video path runs, and can be checked end to end, without camera hardware or cgo.
//
// Every picture carries its frame counter and capture time twice: in an SEI message of
// the access unit (h264.ParseFrameInfo) and drawn as black/white macroblock strips that
// survive decoding (ReadCounterStrip; layout in the Strip* constants). The first access
// unit is an IDR, and so is the one after RequestKeyframe and every GOP.
//
// The caller owns the Camera and closes it. ReadSample is called from one goroutine;
// RequestKeyframe and Close from any.
package synth

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/still"
)

// ErrClosed is returned by ReadSample after Close.
var ErrClosed = errors.New("synth: camera closed")

// CameraOptions configure a Camera; zero fields take the defaults.
type CameraOptions struct {
	Width, Height int           // even, at least 64x64; default 640x480
	FPS           int           // default 30
	GOP           time.Duration // time between periodic IDRs; default 2 s
}

// Camera is the synthetic device.VideoSource.
type Camera struct {
	period time.Duration
	enc    *h264.Encoder
	frame  *h264.Frame
	timer  *time.Timer

	start   time.Time // schedule origin: frame n is due at start + n·period
	next    int64     // schedule index of the next frame
	counter uint64

	last still.Latest // for LatestPicture

	keyframe  atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

var (
	_ device.VideoSource = (*Camera)(nil)
	_ device.StillSource = (*Camera)(nil)
)

// open counts the cameras made and not yet closed (Open).
var open atomic.Int64

// Open is the number of synthetic cameras made by NewCamera and not yet closed: tests use
// it to check that a camera is really released (privacy mode, the end of a call).
func Open() int { return int(open.Load()) }

// NewCamera returns a camera; frames are produced on demand by ReadSample.
func NewCamera(opts CameraOptions) (*Camera, error) {
	if opts.Width == 0 && opts.Height == 0 {
		opts.Width, opts.Height = 640, 480
	}
	if opts.FPS == 0 {
		opts.FPS = 30
	}
	if opts.GOP == 0 {
		opts.GOP = 2 * time.Second
	}
	if opts.Width < 64 || opts.Height < 64 {
		return nil, fmt.Errorf("synth: frame size %dx%d: must be at least 64x64", opts.Width, opts.Height)
	}
	if opts.GOP < 0 {
		return nil, fmt.Errorf("synth: negative GOP %v", opts.GOP)
	}
	enc, err := h264.NewEncoder(opts.Width, opts.Height, opts.FPS)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	enc.SetIDRInterval(max(1, int(math.Round(opts.GOP.Seconds()*float64(opts.FPS)))))
	t := time.NewTimer(time.Hour)
	t.Stop()
	open.Add(1)
	return &Camera{
		period: time.Second / time.Duration(opts.FPS),
		enc:    enc,
		frame:  h264.NewFrame(opts.Width, opts.Height),
		timer:  t,
		closed: make(chan struct{}),
	}, nil
}

// MimeType is "video/H264".
func (c *Camera) MimeType() string { return "video/H264" }

// RequestKeyframe makes the next access unit an IDR.
func (c *Camera) RequestKeyframe() { c.keyframe.Store(true) }

// Close stops the camera; a blocked ReadSample returns ErrClosed.
func (c *Camera) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		open.Add(-1)
	})
	return nil
}

// LatestPicture returns a copy of the picture of the last sample ReadSample returned.
func (c *Camera) LatestPicture() (device.Picture, error) { return c.last.Picture() }

// ReadSample waits for the next frame time, then draws and encodes the frame. Frames
// follow a fixed schedule from the first call, so they do not drift; a reader more than
// a frame late restarts the schedule instead of receiving a burst. The counter counts
// the frames delivered, so it has no gaps.
func (c *Camera) ReadSample(ctx context.Context) (device.Sample, error) {
	select {
	case <-c.closed:
		return device.Sample{}, ErrClosed
	default:
	}
	now := time.Now()
	if c.start.IsZero() {
		c.start = now
	}
	due := c.start.Add(time.Duration(c.next) * c.period)
	if wait := due.Sub(now); wait > 0 {
		c.timer.Reset(wait)
		select {
		case <-ctx.Done():
			c.timer.Stop()
			return device.Sample{}, ctx.Err()
		case <-c.closed:
			c.timer.Stop()
			return device.Sample{}, ErrClosed
		case <-c.timer.C:
		}
	} else if -wait > c.period {
		c.start = now.Add(-time.Duration(c.next) * c.period)
	}
	c.next++

	capture := time.Now()
	Render(c.frame, c.counter, capture)
	info := h264.FrameInfo{Counter: c.counter, CaptureTime: capture}
	au, err := c.enc.Encode(c.frame, c.keyframe.Swap(false), info)
	if err != nil {
		return device.Sample{}, fmt.Errorf("synth: encode frame %d: %w", c.counter, err)
	}
	c.last.Keep(c.frame, nil, capture)
	c.counter++
	return device.Sample{
		Data:        au,
		Duration:    c.period,
		Keyframe:    h264.IsKeyframe(au),
		CaptureTime: capture,
	}, nil
}
