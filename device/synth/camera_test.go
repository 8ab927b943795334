package synth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/h264/h264test"
	"github.com/camagent/camagent/device/synth"
)

func TestCamera(t *testing.T) {
	const n, fps = 10, 30
	cam, err := synth.NewCamera(synth.CameraOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	if cam.MimeType() != "video/H264" {
		t.Errorf("MimeType = %q", cam.MimeType())
	}
	ctx := context.Background()
	var stream []byte
	var captures []time.Time
	begin := time.Now()
	for i := 0; i < n; i++ {
		s, err := cam.ReadSample(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			cam.RequestKeyframe()
		}
		wantKey := i == 0 || i == 6
		if s.Keyframe != wantKey || h264.IsKeyframe(s.Data) != wantKey {
			t.Errorf("sample %d: Keyframe = %v, want %v", i, s.Keyframe, wantKey)
		}
		if s.Duration != time.Second/fps {
			t.Errorf("sample %d: Duration = %v", i, s.Duration)
		}
		c, ts, ok := h264.ParseFrameInfo(s.Data)
		if !ok || c != uint64(i) || !ts.Equal(s.CaptureTime) {
			t.Errorf("sample %d: SEI counter %d time %v ok %v; capture %v", i, c, ts, ok, s.CaptureTime)
		}
		t.Logf("sample %d: %d bytes, keyframe %v", i, len(s.Data), s.Keyframe)
		if !s.Keyframe && len(s.Data) > 16<<10 {
			t.Errorf("sample %d: P frame of %d bytes", i, len(s.Data))
		}
		captures = append(captures, s.CaptureTime)
		stream = append(stream, s.Data...)
	}
	// Paced in real time: n frames span n-1 periods (loosely: shared CI machines).
	if el := time.Since(begin); el < (n-1)*time.Second/fps*8/10 || el > 5*time.Second {
		t.Errorf("%d samples took %v, want about %v", n, el, (n-1)*time.Second/fps)
	}

	dec := h264test.Decode(t, stream, 640, 480)
	if len(dec) != n {
		t.Fatalf("decoded %d frames, want %d", len(dec), n)
	}
	for i, f := range dec {
		counter, ms := synth.ReadCounterStrip(f.Y, f.Width)
		if counter != uint32(i) || ms != uint32(captures[i].UnixMilli()) {
			t.Errorf("frame %d: strip says counter %d, ms %d; want %d, %d", i, counter, ms, i, uint32(captures[i].UnixMilli()))
		}
		// The encoder is lossless: the decoded picture is the rendered one.
		want := h264.NewFrame(640, 480)
		synth.Render(want, uint64(i), captures[i])
		if string(want.Y) != string(f.Y) || string(want.Cb) != string(f.Cb) || string(want.Cr) != string(f.Cr) {
			t.Errorf("frame %d: decoded picture differs from the rendered one", i)
		}
	}
}

func TestCameraStops(t *testing.T) {
	cam, err := synth.NewCamera(synth.CameraOptions{Width: 128, Height: 96, FPS: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cam.ReadSample(context.Background()); err != nil { // first frame is immediate
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := cam.ReadSample(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadSample with expiring ctx: %v", err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		cam.Close()
	}()
	if _, err := cam.ReadSample(context.Background()); !errors.Is(err, synth.ErrClosed) {
		t.Errorf("ReadSample during Close: %v", err)
	}
	if _, err := cam.ReadSample(context.Background()); !errors.Is(err, synth.ErrClosed) {
		t.Errorf("ReadSample after Close: %v", err)
	}
	if err := cam.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewCameraRejects(t *testing.T) {
	for _, o := range []synth.CameraOptions{{Width: 32, Height: 32}, {Width: 641, Height: 480}, {FPS: -1}, {GOP: -time.Second}} {
		if cam, err := synth.NewCamera(o); err == nil {
			cam.Close()
			t.Errorf("NewCamera(%+v) succeeded", o)
		}
	}
}

func TestStripRoundTrip(t *testing.T) {
	capture := time.UnixMilli(0x1_89ab_cdef)
	for _, c := range []struct {
		w, h         int
		counter      uint64
		wantC, wantT uint32
	}{
		{640, 480, 0x12_345678, 0x345678, 0x89abcdef},
		{448, 96, 0xabcdef, 0xabcdef, 0}, // too narrow for the time strip
		{320, 240, 5, 0, 0},              // too narrow for either
	} {
		f := h264.NewFrame(c.w, c.h)
		synth.Render(f, c.counter, capture)
		gotC, gotT := synth.ReadCounterStrip(f.Y, f.Width)
		if gotC != c.wantC || gotT != c.wantT {
			t.Errorf("%dx%d: strips read %#x, %#x; want %#x, %#x", c.w, c.h, gotC, gotT, c.wantC, c.wantT)
		}
	}
}

// BenchmarkRenderEncode is the camera's work per frame at 640x480 without the pacing.
func BenchmarkRenderEncode(b *testing.B) {
	enc, err := h264.NewEncoder(640, 480, 30)
	if err != nil {
		b.Fatal(err)
	}
	f := h264.NewFrame(640, 480)
	t0 := time.Now()
	var idr, p, np int
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		capture := t0.Add(time.Duration(i) * time.Second / 30)
		synth.Render(f, uint64(i), capture)
		au, err := enc.Encode(f, false, h264.FrameInfo{Counter: uint64(i), CaptureTime: capture})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			idr = len(au)
		} else if !h264.IsKeyframe(au) {
			p += len(au)
			np++
		}
	}
	b.ReportMetric(float64(idr), "IDR-bytes")
	if np > 0 {
		b.ReportMetric(float64(p)/float64(np), "P-bytes/frame")
	}
}
