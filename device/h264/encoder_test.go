package h264_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/h264/h264test"
)

// scene draws test frame n: mid-gray with a moving box (not aligned to macroblocks),
// a flat colored area aligned to macroblocks (exercises exact DC prediction of other
// values than 128), a black/white bit strip, noise that changes every 10 frames, and
// content touching the right and bottom edges (exercises padding and cropping).
func scene(f *h264.Frame, n int) {
	w, h := f.Width, f.Height
	cw := w / 2
	fill(f, 0, 0, w, h, 128, 128, 128)
	fill(f, 32, 16, 64, 48, 41, 240, 110) // flat blue-ish area
	bx := (n * 7) % (w - 24)
	by := 8 + (n*3)%(h-30)
	fill(f, bx, by, 24, 20, byte(60+n), 90, 200)
	for i := 0; i < 8; i++ {
		v := byte(16)
		if n>>i&1 == 1 {
			v = 235
		}
		fill(f, i*16, 0, 16, 16, v, 128, 128)
	}
	r := rand.New(rand.NewPCG(uint64(n/10), 9))
	for y := h - 10; y < h; y++ {
		for x := w - 40; x < w; x++ {
			f.Y[y*w+x] = byte(r.Uint32())
		}
	}
	for y := (h - 10) / 2; y < h/2; y++ {
		for x := (w - 40) / 2; x < cw; x++ {
			f.Cb[y*cw+x] = byte(r.Uint32())
			f.Cr[y*cw+x] = byte(r.Uint32())
		}
	}
}

// fill paints a rectangle; x, y, rw, rh are even so chroma covers it exactly.
func fill(f *h264.Frame, x, y, rw, rh int, yv, cb, cr byte) {
	x, y = x&^1, y&^1
	if x+rw > f.Width {
		rw = f.Width - x
	}
	if y+rh > f.Height {
		rh = f.Height - y
	}
	for j := y; j < y+rh; j++ {
		for i := x; i < x+rw; i++ {
			f.Y[j*f.Width+i] = yv
		}
	}
	cw := f.Width / 2
	for j := y / 2; j < (y+rh)/2; j++ {
		for i := x / 2; i < (x+rw)/2; i++ {
			f.Cb[j*cw+i] = cb
			f.Cr[j*cw+i] = cr
		}
	}
}

func cloneFrame(f *h264.Frame) *h264.Frame {
	return &h264.Frame{Width: f.Width, Height: f.Height,
		Y: bytes.Clone(f.Y), Cb: bytes.Clone(f.Cb), Cr: bytes.Clone(f.Cr)}
}

func sameFrame(a, b *h264.Frame) string {
	for _, p := range []struct {
		name string
		a, b []byte
		w    int
	}{{"Y", a.Y, b.Y, a.Width}, {"Cb", a.Cb, b.Cb, a.Width / 2}, {"Cr", a.Cr, b.Cr, a.Width / 2}} {
		if len(p.a) != len(p.b) {
			return fmt.Sprintf("%s: %d bytes vs %d", p.name, len(p.a), len(p.b))
		}
		for i := range p.a {
			if p.a[i] != p.b[i] {
				return fmt.Sprintf("%s differs first at x=%d y=%d: %d vs %d", p.name, i%p.w, i/p.w, p.a[i], p.b[i])
			}
		}
	}
	return ""
}

// TestDecodeLossless encodes sequences with IDR periods and a forced IDR, decodes them
// with ffmpeg and requires every decoded picture to equal its source byte for byte.
func TestDecodeLossless(t *testing.T) {
	for _, size := range []struct{ w, h int }{{640, 480}, {320, 180}, {1280, 720}, {66, 38}} {
		t.Run(fmt.Sprintf("%dx%d", size.w, size.h), func(t *testing.T) {
			const n = 60
			enc, err := h264.NewEncoder(size.w, size.h, 30)
			if err != nil {
				t.Fatal(err)
			}
			enc.SetIDRInterval(25)
			f := h264.NewFrame(size.w, size.h)
			var stream []byte
			var src []*h264.Frame
			t0 := time.Unix(1700000000, 0)
			for i := 0; i < n; i++ {
				scene(f, i)
				src = append(src, cloneFrame(f))
				force := i == 37
				info := h264.FrameInfo{Counter: uint64(i), CaptureTime: t0.Add(time.Duration(i) * time.Second / 30)}
				au, err := enc.Encode(f, force, info)
				if err != nil {
					t.Fatal(err)
				}
				wantKey := i == 0 || i == 25 || i == 37 || i == 37+25
				if h264.IsKeyframe(au) != wantKey {
					t.Errorf("frame %d: keyframe = %v, want %v", i, !wantKey, wantKey)
				}
				c, ts, ok := h264.ParseFrameInfo(au)
				if !ok || c != info.Counter || !ts.Equal(info.CaptureTime) {
					t.Errorf("frame %d: ParseFrameInfo = %d, %v, %v", i, c, ts, ok)
				}
				stream = append(stream, au...)
			}
			dec := h264test.Decode(t, stream, size.w, size.h)
			if len(dec) != n {
				t.Fatalf("decoded %d frames, want %d", len(dec), n)
			}
			for i := range dec {
				if d := sameFrame(src[i], dec[i]); d != "" {
					t.Fatalf("frame %d not lossless: %s", i, d)
				}
			}
		})
	}
}

// TestGrayIDRIsSmall checks the no-residual DC path: a mid-gray picture costs about a
// byte per macroblock, not an I_PCM macroblock's 384.
func TestGrayIDRIsSmall(t *testing.T) {
	enc, err := h264.NewEncoder(640, 480, 30)
	if err != nil {
		t.Fatal(err)
	}
	f := h264.NewFrame(640, 480)
	idr, err := enc.Encode(f, false, h264.FrameInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if len(idr) > 1400 { // 1200 macroblocks of 8 bits plus headers
		t.Errorf("gray 640x480 IDR is %d bytes, want ≤ 1400", len(idr))
	}
	p, err := enc.Encode(f, false, h264.FrameInfo{Counter: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(p) > 80 {
		t.Errorf("unchanged P frame is %d bytes, want ≤ 80", len(p))
	}
	// Gray around I_PCM macroblocks (nC 8 and 16 in coeff_token) still decodes exactly.
	scene(f, 3)
	idr2, _ := enc.Encode(f, true, h264.FrameInfo{Counter: 2})
	t.Logf("gray IDR %d bytes, empty P %d bytes, scene IDR %d bytes", len(idr), len(p), len(idr2))
	stream := append(append(append([]byte(nil), idr...), p...), idr2...)
	dec := h264test.Decode(t, stream, 640, 480)
	if len(dec) != 3 {
		t.Fatalf("decoded %d frames, want 3", len(dec))
	}
	gray := h264.NewFrame(640, 480)
	for i, want := range []*h264.Frame{gray, gray, f} {
		if d := sameFrame(want, dec[i]); d != "" {
			t.Fatalf("frame %d: %s", i, d)
		}
	}
}

// TestRandomFrames codes noise, which is all I_PCM (full of emulation prevention), and a
// second noise frame as a P frame.
func TestRandomFrames(t *testing.T) {
	const w, h = 640, 480
	enc, err := h264.NewEncoder(w, h, 30)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var stream []byte
	var src []*h264.Frame
	for i := 0; i < 3; i++ {
		f := h264.NewFrame(w, h)
		for _, p := range [][]byte{f.Y, f.Cb, f.Cr} {
			for j := range p {
				p[j] = byte(r.Uint32() % 4) // many zero bytes
			}
		}
		src = append(src, f)
		au, err := enc.Encode(f, false, h264.FrameInfo{Counter: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		if min := w * h * 3 / 2; len(au) < min {
			t.Errorf("frame %d: %d bytes, less than the %d raw bytes", i, len(au), min)
		}
		stream = append(stream, au...)
	}
	dec := h264test.Decode(t, stream, w, h)
	if len(dec) != len(src) {
		t.Fatalf("decoded %d frames, want %d", len(dec), len(src))
	}
	for i := range dec {
		if d := sameFrame(src[i], dec[i]); d != "" {
			t.Fatalf("frame %d: %s", i, d)
		}
	}
}

func TestNewEncoderRejects(t *testing.T) {
	for _, c := range []struct{ w, h, fps int }{{641, 480, 30}, {640, 0, 30}, {640, 480, 0}, {16384, 16384, 30}} {
		if _, err := h264.NewEncoder(c.w, c.h, c.fps); err == nil {
			t.Errorf("NewEncoder(%d, %d, %d) succeeded", c.w, c.h, c.fps)
		}
	}
	enc, _ := h264.NewEncoder(64, 64, 30)
	if _, err := enc.Encode(h264.NewFrame(32, 32), false, h264.FrameInfo{}); err == nil {
		t.Error("Encode accepted a frame of the wrong size")
	}
}

func TestProfileLevelID(t *testing.T) {
	for _, c := range []struct {
		w, h, fps int
		want      string
	}{{640, 480, 30, "42c01e"}, {1280, 720, 30, "42c01f"}, {1920, 1080, 30, "42c028"}, {320, 180, 30, "42c00d"}, {176, 144, 15, "42c00a"}} {
		enc, err := h264.NewEncoder(c.w, c.h, c.fps)
		if err != nil {
			t.Fatal(err)
		}
		if got := enc.ProfileLevelID(); got != c.want {
			t.Errorf("%dx%d@%d: profile-level-id %s, want %s", c.w, c.h, c.fps, got, c.want)
		}
	}
}

// BenchmarkEncode640x480 encodes a loop of pre-drawn test scenes (a moving box, a bit
// strip, noise); bytes/frame is the average access unit, IDR every 60 frames.
func BenchmarkEncode640x480(b *testing.B) {
	enc, err := h264.NewEncoder(640, 480, 30)
	if err != nil {
		b.Fatal(err)
	}
	frames := make([]*h264.Frame, 60)
	for i := range frames {
		frames[i] = h264.NewFrame(640, 480)
		scene(frames[i], i)
	}
	var dst []byte
	total := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst, err = enc.AppendEncode(dst[:0], frames[i%len(frames)], false, h264.FrameInfo{Counter: uint64(i)})
		if err != nil {
			b.Fatal(err)
		}
		total += len(dst)
	}
	b.ReportMetric(float64(total)/float64(b.N), "bytes/frame")
}

// blockNoise repaints a random subset (all when every is true) of the macroblocks of f
// with values 127 and 128 only, per macroblock or per 4x4 block, so that DC prediction
// often reproduces a macroblock exactly and every branch of 8.3.3.3 and 8.3.4 (neighbours
// available or not, chroma blocks preferring the upper or left neighbour, rounding)
// decides whether the encoder may skip the residual.
func blockNoise(f *h264.Frame, r *rand.Rand, every bool) {
	cw := f.Width / 2
	for my := 0; my < f.Height/16; my++ {
		for mx := 0; mx < f.Width/16; mx++ {
			if !every && r.IntN(4) != 0 {
				continue
			}
			perBlock := r.IntN(3) == 0
			v := byte(127 + r.IntN(2))
			for by := 0; by < 4; by++ {
				for bx := 0; bx < 4; bx++ {
					if perBlock {
						v = byte(127 + r.IntN(2))
					}
					for y := 0; y < 4; y++ {
						for x := 0; x < 4; x++ {
							f.Y[(my*16+by*4+y)*f.Width+mx*16+bx*4+x] = v
						}
					}
				}
			}
			for _, c := range [][]byte{f.Cb, f.Cr} {
				cv := byte(127 + r.IntN(2))
				perBlock := r.IntN(2) == 0
				for by := 0; by < 2; by++ {
					for bx := 0; bx < 2; bx++ {
						if perBlock {
							cv = byte(127 + r.IntN(2))
						}
						for y := 0; y < 4; y++ {
							for x := 0; x < 4; x++ {
								c[(my*8+by*4+y)*cw+mx*8+bx*4+x] = cv
							}
						}
					}
				}
			}
		}
	}
}

// TestDCPredictionEdgeCases makes the exact-DC decision on thousands of near-miss
// macroblocks, in I and P slices; any wrong decision shows up as a decoded difference.
func TestDCPredictionEdgeCases(t *testing.T) {
	const w, h, n = 320, 240, 40
	enc, err := h264.NewEncoder(w, h, 30)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	f := h264.NewFrame(w, h)
	var stream []byte
	var src []*h264.Frame
	for i := 0; i < n; i++ {
		blockNoise(f, r, i%10 == 0)
		src = append(src, cloneFrame(f))
		au, err := enc.Encode(f, i%10 == 0, h264.FrameInfo{Counter: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, au...)
	}
	if full := n * w * h * 3 / 2; len(stream) > full/2 {
		t.Errorf("stream is %d bytes; the DC path was hardly used (raw %d)", len(stream), full)
	}
	dec := h264test.Decode(t, stream, w, h)
	if len(dec) != n {
		t.Fatalf("decoded %d frames, want %d", len(dec), n)
	}
	for i := range dec {
		if d := sameFrame(src[i], dec[i]); d != "" {
			t.Fatalf("frame %d: %s", i, d)
		}
	}
}

// TestFlatMacroblocks codes macroblocks of random flat luma (one DC level each, of every
// size from -255 to 255) between I_PCM ones (nC 0, 8 and 16), in I and P slices.
func TestFlatMacroblocks(t *testing.T) {
	const w, h, n = 320, 240, 12
	enc, err := h264.NewEncoder(w, h, 30)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	f := h264.NewFrame(w, h)
	var stream []byte
	var src []*h264.Frame
	for i := 0; i < n; i++ {
		for my := 0; my < h/16; my++ {
			for mx := 0; mx < w/16; mx++ {
				if i > 0 && r.IntN(3) != 0 {
					continue
				}
				v := byte(r.IntN(256))
				if r.IntN(2) == 0 {
					v = byte(int(f.Y[my*16*w+mx*16]) + r.IntN(41) - 20) // small steps too
				}
				fill(f, mx*16, my*16, 16, 16, v, 128, 128)
				if r.IntN(6) == 0 { // noisy chroma forces I_PCM
					f.Cb[my*8*(w/2)+mx*8] = byte(r.IntN(256))
				}
			}
		}
		src = append(src, cloneFrame(f))
		au, err := enc.Encode(f, i == 6, h264.FrameInfo{Counter: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("frame %d: %d bytes", i, len(au))
		stream = append(stream, au...)
	}
	dec := h264test.Decode(t, stream, w, h)
	if len(dec) != n {
		t.Fatalf("decoded %d frames, want %d", len(dec), n)
	}
	for i := range dec {
		if d := sameFrame(src[i], dec[i]); d != "" {
			t.Fatalf("frame %d: %s", i, d)
		}
	}
}
