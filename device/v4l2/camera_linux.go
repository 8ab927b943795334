package v4l2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blackjack/webcam"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/encode"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/still"
	"github.com/camagent/camagent/device/v4l2abi"
	"golang.org/x/sys/unix"
)

// Camera is a V4L2 capture device as a device.VideoSource.
type Camera struct {
	path   string
	log    *slog.Logger
	choice Choice
	stride int
	period time.Duration
	stall  time.Duration

	mu    sync.Mutex // held while the capture fd is in use
	cam   capturer
	ctlMu sync.Mutex // guards ctl, so a keyframe request never waits for a picture
	ctl   controller // a second descriptor for controls and queries (nil: none)
	enc   encode.Encoder
	pic   *h264.Frame
	ps    encode.ParamSets
	warn  sync.Once

	last still.Latest // the last picture encoded, for LatestPicture

	keyframe  atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

var (
	_ device.VideoSource = (*Camera)(nil)
	_ device.StillSource = (*Camera)(nil)
)

// capturer is what a Camera uses of its capture descriptor: blackjack/webcam's Webcam, or
// a fake in tests.
type capturer interface {
	GetSupportedFormats() map[webcam.PixelFormat]string
	GetSupportedFrameSizes(f webcam.PixelFormat) []webcam.FrameSize
	GetSupportedFramerates(fp webcam.PixelFormat, width, height uint32) []webcam.FrameRate
	SetImageFormat(f webcam.PixelFormat, width, height uint32) (webcam.PixelFormat, uint32, uint32, error)
	SetFramerate(fps float32) error
	GetFramerate() (float32, error)
	SetBufferCount(count uint32) error
	StartStreaming() error
	WaitForFrame(timeout uint32) error
	GetFrame() ([]byte, uint32, error)
	ReleaseFrame(index uint32) error
	Close() error
}

// controller is the Camera's second descriptor, for the queries and controls webcam lacks.
type controller interface {
	v4l2abi.Ioctler
	Close() error
}

// LatestPicture returns the last picture ReadSample encoded (MJPEG cameras: with the
// camera's own JPEG of it), or device.ErrNoStill for an H.264 camera passed through.
func (c *Camera) LatestPicture() (device.Picture, error) {
	if c.choice.Passthrough() {
		return device.Picture{}, device.ErrNoStill
	}
	return c.last.Picture()
}

// Open opens the capture device at path (a /dev/videoN or a /dev/v4l link), chooses a
// format (Choose), and starts streaming.
func Open(path string, o Options) (*Camera, error) {
	o = o.withDefaults()
	path = ResolvePath(path)
	if _, err := isCapture(path); err != nil {
		return nil, err
	}
	cam, err := openWebcam(path)
	if err != nil {
		return nil, fmt.Errorf("v4l2: open %s: %w", path, err)
	}
	return start(path, o, cam, func() (controller, error) {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		return node(fd), nil
	})
}

// start sets up a Camera on an open capture descriptor (Options already defaulted); openCtl
// opens the second descriptor once the format is set. On an error cam is closed.
func start(path string, o Options, cam capturer, openCtl func() (controller, error)) (*Camera, error) {
	c := &Camera{path: path, cam: cam, closed: make(chan struct{}), stall: o.StallTimeout,
		log: o.Logger.With("component", "v4l2", "device", path)}
	if err := c.setup(o, openCtl); err != nil {
		c.release()
		return nil, err
	}
	return c, nil
}

func (c *Camera) setup(o Options, openCtl func() (controller, error)) error {
	formats := formatsOf(c.cam)
	passthrough := o.Encoder == "" || o.Encoder == "auto" || o.Encoder == "passthrough"
	raw := o.Encoder != "passthrough"
	ch, err := Choose(formats, o.Format, o.Width, o.Height, o.FPS, passthrough, raw)
	if err != nil {
		return fmt.Errorf("v4l2: %s: %w", c.path, err)
	}
	got, w, h, err := c.cam.SetImageFormat(webcam.PixelFormat(code(ch.FourCC)), uint32(ch.Width), uint32(ch.Height))
	if err != nil {
		return fmt.Errorf("v4l2: %s: set format %s: %w", c.path, ch, err)
	}
	if fourcc(uint32(got)) != ch.FourCC {
		return fmt.Errorf("v4l2: %s: asked for %s, the driver chose %s", c.path, ch.FourCC, fourcc(uint32(got)))
	}
	ch.Width, ch.Height = int(w), int(h)
	ctl, err := openCtl()
	if err != nil {
		return fmt.Errorf("v4l2: open %s: %w", c.path, err)
	}
	c.ctl = ctl
	if pf, err := getFormat(c.ctl); err == nil {
		ch.Width, ch.Height, c.stride = int(pf.Width), int(pf.Height), int(pf.BytesPerLine)
	}
	fps := o.FPS
	if ch.Rate.Num != 0 {
		if err := c.cam.SetFramerate(float32(ch.Rate.FPS())); err != nil {
			c.log.Debug("set frame rate", "fps", ch.Rate.FPS(), "err", err)
		}
	}
	if r, err := c.cam.GetFramerate(); err == nil && r > 0 {
		fps = int(r + 0.5)
	}
	if fps <= 0 {
		fps = 30
	}
	c.period = time.Second / time.Duration(fps)
	c.choice = ch
	if !ch.Passthrough() {
		if ch.Width%2 != 0 || ch.Height%2 != 0 {
			return fmt.Errorf("v4l2: %s: odd picture size %dx%d", c.path, ch.Width, ch.Height)
		}
		c.pic = h264.NewFrame(ch.Width, ch.Height)
		if c.enc, err = o.NewEncoder(ch.Width, ch.Height, fps); err != nil {
			return fmt.Errorf("v4l2: %s: %w", c.path, err)
		}
	}
	if err := c.cam.SetBufferCount(uint32(o.Buffers)); err != nil {
		return fmt.Errorf("v4l2: %s: %w", c.path, err)
	}
	if err := c.cam.StartStreaming(); err != nil {
		return fmt.Errorf("v4l2: %s: start streaming: %w", c.path, err)
	}
	how := "passthrough (the camera encodes H.264)"
	if c.enc != nil {
		how = "encode with " + c.enc.Name()
	}
	c.log.Info("camera streaming", "format", ch.String(), "fps", fps, "video", how)
	return nil
}

// Choice returns the format, size and rate in use.
func (c *Camera) Choice() Choice { return c.choice }

// MimeType is "video/H264".
func (c *Camera) MimeType() string { return "video/H264" }

// RequestKeyframe makes the next access unit an IDR.
func (c *Camera) RequestKeyframe() {
	if c.enc != nil {
		c.keyframe.Store(true)
		return
	}
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	if c.ctl == nil {
		return
	}
	if err := v4l2abi.SetControl(c.ctl, v4l2abi.CIDForceKeyFrame, 1); err != nil {
		c.warn.Do(func() {
			c.log.Info("camera cannot force a keyframe; viewers wait for its next IDR", "err", err)
		})
	}
}

// Close stops streaming and closes the device; a blocked ReadSample returns
// ErrClosed within a second.
func (c *Camera) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	c.release()
	return nil
}

func (c *Camera) release() {
	if c.cam != nil {
		c.cam.Close()
		c.cam = nil
	}
	if c.ctl != nil {
		c.ctl.Close()
		c.ctl = nil
	}
	if c.enc != nil {
		c.enc.Close()
	}
}

// ErrClosed is returned by ReadSample after Close.
var ErrClosed = errors.New("v4l2: camera closed")

// ErrStalled is wrapped by ReadSample's error when the camera delivers no picture.
var ErrStalled = errors.New("v4l2: camera delivers no pictures")

// ReadSample waits for the camera's next picture and returns it as an access unit.
func (c *Camera) ReadSample(ctx context.Context) (device.Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	waited := time.Duration(0)
	for {
		select {
		case <-c.closed:
			return device.Sample{}, ErrClosed
		case <-ctx.Done():
			return device.Sample{}, ctx.Err()
		default:
		}
		if c.cam == nil {
			return device.Sample{}, ErrClosed
		}
		err := c.cam.WaitForFrame(1)
		var timeout *webcam.Timeout
		if errors.As(err, &timeout) {
			if waited += time.Second; waited >= c.stall {
				return device.Sample{}, fmt.Errorf("%w: %s: nothing for %v", ErrStalled, c.path, waited)
			}
			continue
		}
		if err != nil {
			return device.Sample{}, fmt.Errorf("v4l2: %s: wait for a picture: %w", c.path, err)
		}
		buf, idx, err := c.cam.GetFrame()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) { // not ready, or a signal: again
			continue
		}
		if err != nil {
			return device.Sample{}, fmt.Errorf("v4l2: %s: dequeue a picture: %w", c.path, err)
		}
		capture := time.Now()
		s, ok, err := c.process(buf, capture)
		rerr := c.cam.ReleaseFrame(idx)
		for errors.Is(rerr, unix.EINTR) { // blackjack/webcam does not retry its ioctls
			rerr = c.cam.ReleaseFrame(idx)
		}
		if rerr != nil && err == nil {
			err = fmt.Errorf("v4l2: %s: requeue a buffer: %w", c.path, rerr)
		}
		if err != nil {
			return device.Sample{}, err
		}
		if ok {
			return s, nil
		}
	}
}

// process turns one camera buffer into an access unit; ok is false for a buffer to skip.
func (c *Camera) process(buf []byte, capture time.Time) (device.Sample, bool, error) {
	if len(buf) == 0 {
		return device.Sample{}, false, nil
	}
	if c.enc == nil {
		au, key, ok := c.ps.Filter(buf)
		if !ok {
			return device.Sample{}, false, nil
		}
		return device.Sample{Data: au, Duration: c.period, Keyframe: key, CaptureTime: capture}, true, nil
	}
	var err error
	switch c.choice.FourCC {
	case "YUYV":
		err = encode.ConvertYUYV(c.pic, buf, c.stride)
	case "NV12":
		err = encode.ConvertNV12(c.pic, buf, c.stride)
	case "YU12", "YV12":
		err = encode.ConvertI420(c.pic, buf, c.stride, c.choice.FourCC == "YV12")
	case "MJPG", "JPEG":
		err = encode.ConvertMJPEG(c.pic, buf)
		if err != nil {
			// A corrupt picture from a USB camera is not fatal: skip it.
			c.log.Debug("skip picture", "err", err)
			return device.Sample{}, false, nil
		}
	default:
		err = fmt.Errorf("v4l2: no converter for %s", c.choice.FourCC)
	}
	if err != nil {
		return device.Sample{}, false, fmt.Errorf("v4l2: %s: %w", c.path, err)
	}
	var own []byte // an MJPEG camera's JPEG of this picture, kept as it is for a snapshot
	if c.choice.FourCC == "MJPG" || c.choice.FourCC == "JPEG" {
		own = buf
	}
	c.last.Keep(c.pic, own, capture)
	au, err := c.enc.Encode(c.pic, c.keyframe.Swap(false), capture)
	if err != nil {
		return device.Sample{}, false, fmt.Errorf("v4l2: %s: encode: %w", c.path, err)
	}
	if len(au) == 0 {
		return device.Sample{}, false, nil // the encoder holds this picture back
	}
	return device.Sample{Data: au, Duration: c.period, Keyframe: h264.IsKeyframe(au), CaptureTime: capture}, true, nil
}
