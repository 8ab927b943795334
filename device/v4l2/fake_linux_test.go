package v4l2

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/blackjack/webcam"
	"github.com/camagent/camagent/device/v4l2abi"
	"github.com/camagent/camagent/device/v4l2abi/v4l2fake"
	"golang.org/x/sys/unix"
)

// fakeCam is a capture device behind the Camera's seams: the capture descriptor (the
// capturer blackjack/webcam provides) and the control descriptor (ioctls: G_FMT, S_CTRL). It
// offers formats, negotiates one as a driver does (it may adjust the size, or pick another
// format), hands out its frames in buffers that must come back before they are reused, and
// can fail as a device does: EAGAIN, EINTR, no frame for a while, or gone (ENODEV).
type fakeCam struct {
	mu      sync.Mutex
	formats map[webcam.PixelFormat]string
	sizes   []webcam.FrameSize
	// negotiate answers S_FMT (nil: what was asked for).
	negotiate func(f webcam.PixelFormat, w, h uint32) (webcam.PixelFormat, uint32, uint32)
	stride    uint32 // bytesperline G_FMT reports (0: none)

	frames  [][]byte // what the camera captures, in order
	next    int
	buffers uint32 // SetBufferCount
	held    map[uint32]bool
	maxHeld int

	// failAt makes the frame with this index fail with err instead (ENODEV: every later one).
	failAt   int
	failErr  error
	timeouts int // WaitForFrame times out this many times first

	format    webcam.PixelFormat
	w, h      uint32
	streaming bool
	closed    bool
	ctl       *v4l2fake.Node // the control descriptor
	ctrls     map[uint32]int32
	waits     int
}

func newFakeCam(formats map[webcam.PixelFormat]string, sizes []webcam.FrameSize) *fakeCam {
	return &fakeCam{formats: formats, sizes: sizes, held: map[uint32]bool{}, ctrls: map[uint32]int32{}, failAt: -1}
}

func pf(s string) webcam.PixelFormat { return webcam.PixelFormat(v4l2abi.FourCC(s)) }

func (f *fakeCam) GetSupportedFormats() map[webcam.PixelFormat]string { return f.formats }

func (f *fakeCam) GetSupportedFrameSizes(webcam.PixelFormat) []webcam.FrameSize { return f.sizes }

func (f *fakeCam) GetSupportedFramerates(webcam.PixelFormat, uint32, uint32) []webcam.FrameRate {
	return []webcam.FrameRate{{MinNumerator: 1, MinDenominator: 30}}
}

func (f *fakeCam) SetImageFormat(p webcam.PixelFormat, w, h uint32) (webcam.PixelFormat, uint32, uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.formats[p]; !ok {
		return 0, 0, 0, unix.EINVAL
	}
	if f.negotiate != nil {
		p, w, h = f.negotiate(p, w, h)
	}
	f.format, f.w, f.h = p, w, h
	return p, w, h, nil
}

func (f *fakeCam) SetFramerate(float32) error     { return nil }
func (f *fakeCam) GetFramerate() (float32, error) { return 30, nil }
func (f *fakeCam) SetBufferCount(n uint32) error  { f.buffers = n; return nil }
func (f *fakeCam) StartStreaming() error          { f.streaming = true; return nil }
func (f *fakeCam) WaitForFrame(timeout uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits++
	if f.closed {
		return unix.EBADF
	}
	if f.timeouts > 0 {
		f.timeouts--
		return new(webcam.Timeout)
	}
	return nil
}

// GetFrame is VIDIOC_DQBUF: the next frame in a free buffer.
func (f *fakeCam) GetFrame() ([]byte, uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || !f.streaming {
		return nil, 0, unix.EBADF
	}
	if f.failAt >= 0 && f.next >= f.failAt {
		err := f.failErr
		if err != unix.ENODEV {
			f.failAt = -1 // a passing error: the frame comes next time
		}
		return nil, 0, err
	}
	if f.next >= len(f.frames) {
		return nil, 0, unix.EAGAIN
	}
	idx := uint32(f.next) % f.buffers
	if f.held[idx] {
		return nil, 0, fmt.Errorf("fake: buffer %d dequeued again before it was queued back", idx)
	}
	f.held[idx] = true
	f.maxHeld = max(f.maxHeld, len(f.held))
	b := f.frames[f.next]
	f.next++
	return b, idx, nil
}

// ReleaseFrame is VIDIOC_QBUF.
func (f *fakeCam) ReleaseFrame(idx uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held[idx] {
		return unix.EINVAL
	}
	delete(f.held, idx)
	return nil
}

func (f *fakeCam) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// outstanding is the number of buffers dequeued and not yet queued back.
func (f *fakeCam) outstanding() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}

// fakeCtl is the driver of a fakeCam's control descriptor (a v4l2fake.Node): G_FMT, S_CTRL.
type fakeCtl struct{ cam *fakeCam }

func (c fakeCtl) Handle(_ *v4l2fake.Node, req uintptr, arg unsafe.Pointer) error {
	f := c.cam
	f.mu.Lock()
	defer f.mu.Unlock()
	switch req {
	case v4l2abi.VidiocGFmt:
		fm := (*v4l2abi.Format)(arg)
		if fm.Type() != v4l2abi.BufTypeVideoCapture {
			return unix.EINVAL
		}
		fm.PutU32(0, f.w)
		fm.PutU32(4, f.h)
		fm.PutU32(8, uint32(f.format))
		fm.PutU32(16, f.stride)
	case v4l2abi.VidiocSCtrl:
		ct := (*v4l2abi.Control)(arg)
		if ct.ID != v4l2abi.CIDForceKeyFrame {
			return unix.EINVAL
		}
		f.ctrls[ct.ID] = ct.Value
	default:
		return unix.ENOTTY
	}
	return nil
}

func (c fakeCtl) Ready(*v4l2fake.Node) (bool, bool) { return false, false }

// open starts a Camera on the fake.
func (f *fakeCam) open(o Options) (*Camera, error) {
	f.ctl = v4l2fake.New(fakeCtl{f})
	return start("/dev/fake0", o.withDefaults(), f, func() (controller, error) { return f.ctl, nil })
}

// unplug makes the camera disappear: both descriptors fail with ENODEV from now on.
func (f *fakeCam) unplug() {
	f.mu.Lock()
	f.failAt, f.failErr = f.next, unix.ENODEV
	f.mu.Unlock()
	f.ctl.Unplug()
}
