package v4l2

import (
	"context"
	"errors"
	"image"
	"strings"
	"testing"
	"time"

	"github.com/blackjack/webcam"
	"github.com/camagent/camagent/device/encode"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/v4l2abi"
	"golang.org/x/sys/unix"
)

// Capture against fakeCam (fake_linux_test.go): the real device is tested in the VM
// (vmtest, vivid); these run everywhere and cover what the VM cannot make happen on cue.

var fixed = func(w, h uint32) []webcam.FrameSize {
	return []webcam.FrameSize{{MinWidth: w, MaxWidth: w, MinHeight: h, MaxHeight: h}}
}

// h264Stream makes n real access units of a w×h picture: an IDR with SPS/PPS, then P frames.
func h264Stream(t *testing.T, w, h, n int) [][]byte {
	t.Helper()
	enc, err := encode.NewSoftware(w, h, 30, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := h264.NewFrame(w, h)
	var out [][]byte
	for i := range n {
		f.Y[i%len(f.Y)] = byte(i)
		au, err := enc.Encode(f, i == 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, au)
	}
	return out
}

func read(t *testing.T, c *Camera) ([]byte, bool, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.ReadSample(ctx)
	return s.Data, s.Keyframe, err
}

// TestCameraPassthrough: an H.264 camera is chosen over MJPEG and passed through; every buffer
// goes back to the driver, the stream starts at its IDR, and a keyframe request sets the
// camera's FORCE_KEY_FRAME control.
func TestCameraPassthrough(t *testing.T) {
	f := newFakeCam(map[webcam.PixelFormat]string{pf("MJPG"): "Motion-JPEG", pf("H264"): "H.264"}, fixed(64, 48))
	aus := h264Stream(t, 64, 48, 6)
	f.frames = append([][]byte{aus[3]}, aus...) // a P frame before the IDR: dropped
	c, err := f.open(Options{Width: 64, Height: 48, Buffers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ch := c.Choice(); ch.FourCC != "H264" || !ch.Passthrough() || ch.Width != 64 || ch.Height != 48 {
		t.Fatalf("chose %v", ch)
	}
	if f.buffers != 2 || !f.streaming {
		t.Fatalf("buffers %d, streaming %v", f.buffers, f.streaming)
	}
	for i, want := range aus {
		au, key, err := read(t, c)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if key != (i == 0) || h264.IsKeyframe(au) != (i == 0) {
			t.Errorf("sample %d: keyframe %v", i, key)
		}
		if len(h264.SplitAnnexB(au)) < len(h264.SplitAnnexB(want)) {
			t.Errorf("sample %d: %d NAL units, the camera sent %d", i, len(h264.SplitAnnexB(au)), len(h264.SplitAnnexB(want)))
		}
		if n := f.outstanding(); n != 0 {
			t.Fatalf("sample %d: %d buffers not queued back", i, n)
		}
	}
	c.RequestKeyframe()
	if v, ok := f.ctrls[v4l2abi.CIDForceKeyFrame]; !ok || v != 1 {
		t.Errorf("FORCE_KEY_FRAME = %d, %v; want 1", v, ok)
	}
	c.Close()
	if !f.closed || !f.ctl.Closed() {
		t.Errorf("after Close: capture closed %v, control closed %v", f.closed, f.ctl.Closed())
	}
	if _, _, err := read(t, c); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadSample after Close: %v, want ErrClosed", err)
	}
}

// yuyv is a w×h YUYV picture with rows of stride bytes: luma y(x, row), chroma 128.
func yuyv(w, h, stride int, y func(x, row int) byte) []byte {
	b := make([]byte, stride*h)
	for r := range h {
		for x := range w {
			b[r*stride+2*x] = y(x, r)
			b[r*stride+2*x+1] = 128
		}
	}
	return b
}

// TestCameraNegotiation: the driver adjusts the size it was asked for and reports a padded
// stride; the camera encodes at the driver's size, reads rows by the driver's stride (the
// picture kept for snapshots is the camera's, pixel for pixel), and a keyframe request makes
// the next access unit an IDR.
func TestCameraNegotiation(t *testing.T) {
	f := newFakeCam(map[webcam.PixelFormat]string{pf("YUYV"): "YUYV 4:2:2"}, fixed(640, 480))
	f.negotiate = func(p webcam.PixelFormat, w, h uint32) (webcam.PixelFormat, uint32, uint32) { return p, 32, 16 }
	f.stride = 2*32 + 64
	luma := func(x, r int) byte { return byte(16 + 4*x + r) }
	for range 4 {
		f.frames = append(f.frames, yuyv(32, 16, int(f.stride), luma))
	}
	c, err := f.open(Options{Width: 640, Height: 480, Encoder: "software"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ch := c.Choice(); ch.FourCC != "YUYV" || ch.Width != 32 || ch.Height != 16 || ch.Passthrough() {
		t.Fatalf("chose %v, want YUYV 32x16 encoded", ch)
	}
	_, key, err := read(t, c)
	if err != nil || !key {
		t.Fatalf("first sample: keyframe %v, %v", key, err)
	}
	if _, key, err = read(t, c); err != nil || key {
		t.Fatalf("second sample: keyframe %v, %v; want a P frame", key, err)
	}
	c.RequestKeyframe()
	if _, key, err = read(t, c); err != nil || !key {
		t.Fatalf("after RequestKeyframe: keyframe %v, %v", key, err)
	}
	pic, err := c.LatestPicture()
	if err != nil {
		t.Fatal(err)
	}
	img, ok := pic.Image.(*image.YCbCr)
	if !ok || img.Rect.Dx() != 32 || img.Rect.Dy() != 16 {
		t.Fatalf("picture %T %v", pic.Image, pic.Image.Bounds())
	}
	for r := range 16 {
		for x := range 32 {
			if got := img.Y[r*img.YStride+x]; got != luma(x, r) {
				t.Fatalf("luma at %d,%d = %d, want %d (stride not applied?)", x, r, got, luma(x, r))
			}
		}
	}
}

// TestCameraDriverChoosesOther: a driver that answers S_FMT with another pixel format than
// the one asked for is refused at Open, and the device is closed.
func TestCameraDriverChoosesOther(t *testing.T) {
	f := newFakeCam(map[webcam.PixelFormat]string{pf("H264"): "H.264", pf("YUYV"): "YUYV"}, fixed(64, 48))
	f.negotiate = func(_ webcam.PixelFormat, w, h uint32) (webcam.PixelFormat, uint32, uint32) { return pf("YUYV"), w, h }
	_, err := f.open(Options{Width: 64, Height: 48, Encoder: "passthrough"})
	if err == nil || !strings.Contains(err.Error(), "the driver chose YUYV") {
		t.Fatalf("Open: %v, want the driver's other choice refused", err)
	}
	if !f.closed || f.streaming {
		t.Errorf("after a refused Open: closed %v, streaming %v", f.closed, f.streaming)
	}
}

// TestCameraGone: a camera unplugged mid-stream (DQBUF: ENODEV) fails ReadSample with an
// error that says so (Resilient reopens on it), after the pictures it gave.
func TestCameraGone(t *testing.T) {
	f := newFakeCam(map[webcam.PixelFormat]string{pf("H264"): "H.264"}, fixed(64, 48))
	f.frames = h264Stream(t, 64, 48, 5)
	c, err := f.open(Options{Width: 64, Height: 48})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 2 {
		if _, _, err := read(t, c); err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	f.unplug()
	c.RequestKeyframe() // the control fails (ENODEV): logged once, nothing else
	for range 2 {       // and it stays gone
		if _, _, err := read(t, c); !errors.Is(err, unix.ENODEV) {
			t.Fatalf("after the unplug: %v, want ENODEV", err)
		}
	}
	if n := f.outstanding(); n != 0 {
		t.Errorf("%d buffers not queued back", n)
	}
}

// TestCameraInterrupted: a dequeue interrupted by a signal (EINTR) or with nothing ready yet
// (EAGAIN) is tried again: the next picture comes, nothing fails.
func TestCameraInterrupted(t *testing.T) {
	for _, e := range []error{unix.EINTR, unix.EAGAIN} {
		f := newFakeCam(map[webcam.PixelFormat]string{pf("H264"): "H.264"}, fixed(64, 48))
		f.frames = h264Stream(t, 64, 48, 3)
		f.failAt, f.failErr = 1, e
		c, err := f.open(Options{Width: 64, Height: 48})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, _, err := read(t, c); err != nil {
				t.Fatalf("%v at the second dequeue: sample %d: %v", e, i, err)
			}
		}
		c.Close()
	}
}

// TestCameraStall: a camera that streams but delivers nothing fails ReadSample with
// ErrStalled after StallTimeout (the fake's wait returns at once: no real waiting).
func TestCameraStall(t *testing.T) {
	f := newFakeCam(map[webcam.PixelFormat]string{pf("H264"): "H.264"}, fixed(64, 48))
	f.frames = h264Stream(t, 64, 48, 1)
	f.timeouts = 1 << 20
	c, err := f.open(Options{Width: 64, Height: 48, StallTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := read(t, c); !errors.Is(err, ErrStalled) {
		t.Fatalf("ReadSample: %v, want ErrStalled", err)
	}
	if f.waits != 3 {
		t.Errorf("%d waits of 1 s before the stall, want 3", f.waits)
	}
	f.timeouts = 2 // a camera that is only slow is not stalled
	if _, _, err := read(t, c); err != nil {
		t.Errorf("after two timeouts: %v", err)
	}
}
