package still_test

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/still"
	"github.com/camagent/camagent/device/synth"
)

// picture is the synthetic camera's picture of frame n.
func picture(n uint64, at time.Time) device.Picture {
	f := h264.NewFrame(640, 480)
	synth.Render(f, n, at)
	return device.Picture{Image: still.FrameImage(f), CaptureTime: at}
}

func decode(t *testing.T, b []byte) *image.YCbCr {
	t.Helper()
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a JPEG: %v", err)
	}
	y, ok := img.(*image.YCbCr)
	if !ok {
		t.Fatalf("decoded %T", img)
	}
	return y
}

// TestJPEGKeepsTheCounter: the strips the synthetic camera draws survive JPEG at full size,
// and the picture scales down to a maxWidth keeping its aspect ratio.
func TestJPEGKeepsTheCounter(t *testing.T) {
	at := time.UnixMilli(1_760_000_123_456)
	for _, n := range []uint64{0, 1, 4242, 1<<24 - 1} {
		r, err := still.JPEG(picture(n, at), still.Options{MaxBytes: 200 << 10})
		if err != nil {
			t.Fatal(err)
		}
		img := decode(t, r.JPEG)
		counter, ms := synth.ReadCounterStrip(img.Y, img.YStride)
		if r.Width != 640 || r.Height != 480 || counter != uint32(n) || ms != uint32(at.UnixMilli()) {
			t.Errorf("frame %d: %dx%d, strip counter %d ms %d", n, r.Width, r.Height, counter, ms)
		}
		t.Logf("frame %d: %d bytes at quality %d", n, len(r.JPEG), r.Quality)
	}
	r, err := still.JPEG(picture(7, at), still.Options{MaxWidth: 320})
	if err != nil {
		t.Fatal(err)
	}
	if img := decode(t, r.JPEG); r.Width != 320 || r.Height != 240 || img.Bounds().Dx() != 320 || img.Bounds().Dy() != 240 {
		t.Fatalf("scaled to %dx%d (%v)", r.Width, r.Height, img.Bounds())
	}
}

// TestJPEGFitsMaxBytes: a picture of noise does not fit at the first quality; the quality
// and then the size step down until it fits, and a limit nothing fits is an error.
func TestJPEGFitsMaxBytes(t *testing.T) {
	f := h264.NewFrame(640, 480)
	seed := uint32(1)
	for i := range f.Y {
		seed = seed*1664525 + 1013904223
		f.Y[i] = byte(seed >> 24)
	}
	p := device.Picture{Image: still.FrameImage(f)}
	big, err := still.JPEG(p, still.Options{})
	if err != nil {
		t.Fatal(err)
	}
	limit := len(big.JPEG) / 4
	r, err := still.JPEG(p, still.Options{MaxBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.JPEG) > limit || (r.Quality == 85 && r.Width == 640) {
		t.Fatalf("%d bytes (limit %d) at quality %d, %dx%d", len(r.JPEG), limit, r.Quality, r.Width, r.Height)
	}
	decode(t, r.JPEG)
	t.Logf("noise: %d bytes at full quality; %d bytes at quality %d, %dx%d for a limit of %d", len(big.JPEG), len(r.JPEG), r.Quality, r.Width, r.Height, limit)
	if _, err := still.JPEG(p, still.Options{MaxBytes: 100}); err == nil {
		t.Fatal("100 bytes: no error")
	}
}

// TestJPEGPassthrough: a camera's own JPEG is used as it is when it fits, and decoded and
// scaled when it is wider than maxWidth.
func TestJPEGPassthrough(t *testing.T) {
	at := time.UnixMilli(1_760_000_000_000)
	var own bytes.Buffer
	if err := jpeg.Encode(&own, picture(99, at).Image, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	p := device.Picture{JPEG: own.Bytes(), CaptureTime: at} // as an MJPEG camera gives it
	r, err := still.JPEG(p, still.Options{MaxBytes: 1 << 20})
	if err != nil || !r.Passthrough || !bytes.Equal(r.JPEG, own.Bytes()) || r.Width != 640 {
		t.Fatalf("passthrough: %v %+v", err, r.Passthrough)
	}
	r, err = still.JPEG(p, still.Options{MaxWidth: 480})
	if err != nil || r.Passthrough || r.Width != 480 || r.Height != 360 {
		t.Fatalf("scaled: %v %dx%d passthrough %v", err, r.Width, r.Height, r.Passthrough)
	}
	decode(t, r.JPEG)
}

// TestLatest: Picture is a copy that later Keeps do not change.
func TestLatest(t *testing.T) {
	var l still.Latest
	if _, err := l.Picture(); !errors.Is(err, device.ErrNoPicture) {
		t.Fatalf("empty: %v", err)
	}
	f := h264.NewFrame(640, 480)
	at := time.UnixMilli(1_760_000_000_000)
	synth.Render(f, 5, at)
	l.Keep(f, nil, at)
	p, err := l.Picture()
	if err != nil {
		t.Fatal(err)
	}
	synth.Render(f, 6, at.Add(time.Second))
	l.Keep(f, nil, at.Add(time.Second))
	y := p.Image.(*image.YCbCr)
	if c, _ := synth.ReadCounterStrip(y.Y, y.YStride); c != 5 || !p.CaptureTime.Equal(at) || p.JPEG != nil {
		t.Fatalf("copy changed: counter %d at %v", c, p.CaptureTime)
	}
}
