package encode

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/h264/h264test"
)

// testPicture returns an I420 picture with distinct values in every plane.
func testPicture(w, h int) *h264.Frame {
	f := h264.NewFrame(w, h)
	for i := range f.Y {
		f.Y[i] = byte(16 + i*7%200)
	}
	for i := range f.Cb {
		f.Cb[i] = byte(40 + i*3%150)
		f.Cr[i] = byte(60 + i*5%150)
	}
	return f
}

func samePlanes(t *testing.T, what string, got, want *h264.Frame) {
	t.Helper()
	if !bytes.Equal(got.Y, want.Y) || !bytes.Equal(got.Cb, want.Cb) || !bytes.Equal(got.Cr, want.Cr) {
		t.Fatalf("%s: converted picture differs from the original", what)
	}
}

func TestConvertRawFormats(t *testing.T) {
	const w, h, pad = 32, 16, 8
	src := testPicture(w, h)
	cw := w / 2

	// YUYV with padded rows; both rows of a pair carry the same chroma, so averaging is exact.
	stride := 2*w + pad
	yuyv := make([]byte, stride*h)
	for y := 0; y < h; y++ {
		for x := 0; x < cw; x++ {
			p := yuyv[y*stride+4*x:]
			p[0], p[1], p[2], p[3] = src.Y[y*w+2*x], src.Cb[y/2*cw+x], src.Y[y*w+2*x+1], src.Cr[y/2*cw+x]
		}
	}
	got := h264.NewFrame(w, h)
	if err := ConvertYUYV(got, yuyv, stride); err != nil {
		t.Fatal(err)
	}
	samePlanes(t, "YUYV", got, src)

	// NV12 with padded rows.
	stride = w + pad
	nv12 := make([]byte, stride*h*3/2)
	for y := 0; y < h; y++ {
		copy(nv12[y*stride:], src.Y[y*w:(y+1)*w])
	}
	for y := 0; y < h/2; y++ {
		for x := 0; x < cw; x++ {
			nv12[stride*h+y*stride+2*x] = src.Cb[y*cw+x]
			nv12[stride*h+y*stride+2*x+1] = src.Cr[y*cw+x]
		}
	}
	got = h264.NewFrame(w, h)
	if err := ConvertNV12(got, nv12, stride); err != nil {
		t.Fatal(err)
	}
	samePlanes(t, "NV12", got, src)

	// YV12: Cr plane first.
	yv12 := append(append(append([]byte{}, src.Y...), src.Cr...), src.Cb...)
	got = h264.NewFrame(w, h)
	if err := ConvertI420(got, yv12, 0, true); err != nil {
		t.Fatal(err)
	}
	samePlanes(t, "YV12", got, src)

	// Short buffers are refused, not read past.
	for name, err := range map[string]error{
		"YUYV": ConvertYUYV(got, yuyv[:100], 0),
		"NV12": ConvertNV12(got, nv12[:100], 0),
		"I420": ConvertI420(got, yv12[:100], 0, false),
	} {
		if !errors.Is(err, ErrShortBuffer) {
			t.Errorf("%s short buffer: %v", name, err)
		}
	}
}

// stripDHT removes the Huffman table segments, as many UVC cameras send MJPEG.
func stripDHT(b []byte) []byte {
	out := append([]byte{}, b[:2]...)
	for i := 2; i+4 <= len(b); {
		m := b[i+1]
		if m == 0xDA {
			return append(out, b[i:]...)
		}
		n := int(b[i+2])<<8 | int(b[i+3])
		if m != 0xC4 {
			out = append(out, b[i:i+2+n]...)
		}
		i += 2 + n
	}
	return out
}

func TestConvertMJPEGWithoutHuffmanTables(t *testing.T) {
	const w, h = 64, 32
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio422)
	for i := range img.Y {
		img.Y[i] = byte(i % 256)
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = 90, 170
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	bare := stripDHT(buf.Bytes())
	if bytes.Contains(bare, []byte{0xFF, 0xC4}) {
		t.Fatal("test picture still has a DHT")
	}
	if _, err := jpeg.Decode(bytes.NewReader(bare)); err == nil {
		t.Fatal("the standard library decodes a picture without Huffman tables: the test proves nothing")
	}
	f := h264.NewFrame(w, h)
	if err := ConvertMJPEG(f, bare); err != nil {
		t.Fatal(err)
	}
	for i, v := range f.Cb {
		if v < 85 || v > 95 || f.Cr[i] < 165 || f.Cr[i] > 175 {
			t.Fatalf("chroma sample %d = %d/%d, want about 90/170", i, v, f.Cr[i])
		}
	}
	if err := ConvertMJPEG(h264.NewFrame(32, 32), buf.Bytes()); err == nil {
		t.Error("a picture of another size was accepted")
	}
	if err := ConvertMJPEG(f, []byte{0xFF, 0xD8, 0xFF}); err == nil {
		t.Error("a truncated picture was accepted")
	}
}

func TestSoftwareEncoderDecodes(t *testing.T) {
	const w, h = 64, 48
	enc, err := NewSoftware(w, h, 30, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	var stream []byte
	var pics []*h264.Frame
	for i := 0; i < 5; i++ {
		p := testPicture(w, h)
		p.Y[i] = 255
		au, err := enc.Encode(p, i == 3, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if key := h264.IsKeyframe(au); key != (i == 0 || i == 3) {
			t.Errorf("picture %d: keyframe %v", i, key)
		}
		stream = append(stream, au...)
		pics = append(pics, p)
	}
	dec := h264test.Decode(t, stream, w, h)
	if len(dec) != len(pics) {
		t.Fatalf("decoded %d pictures of %d", len(dec), len(pics))
	}
	for i := range dec {
		samePlanes(t, "decoded", dec[i], pics[i])
	}
}
