package encode

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"sync"

	"github.com/camagent/camagent/device/h264"
)

// ErrShortBuffer is returned when a camera buffer is smaller than its format and size need.
var ErrShortBuffer = errors.New("encode: buffer too short for the picture size")

// ConvertYUYV converts packed 4:2:2 YUYV (Y0 U Y1 V) with the given stride (bytes per
// row; 0 means 2·width) into f, averaging each pair of chroma rows.
func ConvertYUYV(f *h264.Frame, src []byte, stride int) error {
	w, h := f.Width, f.Height
	if stride == 0 {
		stride = 2 * w
	}
	if len(src) < stride*(h-1)+2*w {
		return fmt.Errorf("%w: YUYV %dx%d needs %d bytes, got %d", ErrShortBuffer, w, h, stride*(h-1)+2*w, len(src))
	}
	cw := w / 2
	for y := 0; y < h; y += 2 {
		r0 := src[y*stride : y*stride+2*w]
		r1 := src[(y+1)*stride : (y+1)*stride+2*w]
		y0 := f.Y[y*w : y*w+w]
		y1 := f.Y[(y+1)*w : (y+1)*w+w]
		cb := f.Cb[y/2*cw : y/2*cw+cw]
		cr := f.Cr[y/2*cw : y/2*cw+cw]
		for x := 0; x < cw; x++ {
			p0, p1 := r0[4*x:4*x+4], r1[4*x:4*x+4]
			y0[2*x], y0[2*x+1] = p0[0], p0[2]
			y1[2*x], y1[2*x+1] = p1[0], p1[2]
			cb[x] = byte((int(p0[1]) + int(p1[1]) + 1) >> 1)
			cr[x] = byte((int(p0[3]) + int(p1[3]) + 1) >> 1)
		}
	}
	return nil
}

// ConvertNV12 converts semi-planar 4:2:0 (a Y plane, then interleaved Cb Cr) with the
// given luma stride (0 means width) into f.
func ConvertNV12(f *h264.Frame, src []byte, stride int) error {
	w, h := f.Width, f.Height
	if stride == 0 {
		stride = w
	}
	need := stride*h + stride*(h/2-1) + w
	if len(src) < need {
		return fmt.Errorf("%w: NV12 %dx%d needs %d bytes, got %d", ErrShortBuffer, w, h, need, len(src))
	}
	for y := 0; y < h; y++ {
		copy(f.Y[y*w:y*w+w], src[y*stride:])
	}
	uv := src[stride*h:]
	cw := w / 2
	for y := 0; y < h/2; y++ {
		row := uv[y*stride : y*stride+w]
		for x := 0; x < cw; x++ {
			f.Cb[y*cw+x] = row[2*x]
			f.Cr[y*cw+x] = row[2*x+1]
		}
	}
	return nil
}

// ConvertI420 copies planar 4:2:0 with the given luma stride (0 means width; chroma
// planes have half of it); swapUV reads YV12 (Cr before Cb).
func ConvertI420(f *h264.Frame, src []byte, stride int, swapUV bool) error {
	w, h := f.Width, f.Height
	if stride == 0 {
		stride = w
	}
	cs, cw, ch := stride/2, w/2, h/2
	if len(src) < stride*h+2*cs*ch {
		return fmt.Errorf("%w: I420 %dx%d needs %d bytes, got %d", ErrShortBuffer, w, h, stride*h+2*cs*ch, len(src))
	}
	for y := 0; y < h; y++ {
		copy(f.Y[y*w:y*w+w], src[y*stride:])
	}
	p1, p2 := src[stride*h:], src[stride*h+cs*ch:]
	if swapUV {
		p1, p2 = p2, p1
	}
	for y := 0; y < ch; y++ {
		copy(f.Cb[y*cw:y*cw+cw], p1[y*cs:])
		copy(f.Cr[y*cw:y*cw+cw], p2[y*cs:])
	}
	return nil
}

// ConvertMJPEG decodes one Motion-JPEG picture into f. Many UVC cameras leave the
// Huffman tables out of their pictures (they are the standard ones of ITU-T T.81
// Annex K); they are inserted when missing. The picture must have f's size.
func ConvertMJPEG(f *h264.Frame, src []byte) error {
	img, err := jpeg.Decode(bytes.NewReader(withHuffmanTables(src)))
	if err != nil {
		return fmt.Errorf("encode: decode MJPEG: %w", err)
	}
	b := img.Bounds()
	if b.Dx() != f.Width || b.Dy() != f.Height {
		return fmt.Errorf("encode: MJPEG picture is %dx%d, want %dx%d", b.Dx(), b.Dy(), f.Width, f.Height)
	}
	yc, ok := img.(*image.YCbCr)
	if !ok {
		if g, ok := img.(*image.Gray); ok {
			for y := 0; y < f.Height; y++ {
				copy(f.Y[y*f.Width:(y+1)*f.Width], g.Pix[y*g.Stride:])
			}
			for i := range f.Cb {
				f.Cb[i], f.Cr[i] = 128, 128
			}
			return nil
		}
		return fmt.Errorf("encode: MJPEG picture in unsupported colour model %T", img)
	}
	w, h := f.Width, f.Height
	for y := 0; y < h; y++ {
		copy(f.Y[y*w:y*w+w], yc.Y[y*yc.YStride:])
	}
	cw := w / 2
	for y := 0; y < h/2; y++ {
		for x := 0; x < cw; x++ {
			// Sample the source chroma at the centre of each 2x2 block.
			var cb, cr int
			for _, p := range [][2]int{{2 * x, 2 * y}, {2*x + 1, 2 * y}, {2 * x, 2*y + 1}, {2*x + 1, 2*y + 1}} {
				i := yc.COffset(p[0]+b.Min.X, p[1]+b.Min.Y)
				cb += int(yc.Cb[i])
				cr += int(yc.Cr[i])
			}
			f.Cb[y*cw+x] = byte((cb + 2) >> 2)
			f.Cr[y*cw+x] = byte((cr + 2) >> 2)
		}
	}
	return nil
}

var (
	dhtOnce sync.Once
	dht     []byte // the standard DHT segment, marker included
)

// standardDHT returns the DHT segment Go's own JPEG encoder writes: the T.81 Annex K
// tables. It is taken from an encoded 16x16 picture rather than spelled out here.
func standardDHT() []byte {
	dhtOnce.Do(func() {
		var buf bytes.Buffer
		// A colour picture, so that the chrominance tables are written too.
		if jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 16, 16)), nil) != nil {
			return
		}
		b := buf.Bytes()
		// Collect every DHT segment (FF C4, length) of the tiny picture.
		for i := 2; i+4 <= len(b); {
			if b[i] != 0xFF {
				break
			}
			marker := b[i+1]
			n := int(b[i+2])<<8 | int(b[i+3])
			if marker == 0xC4 {
				dht = append(dht, b[i:i+2+n]...)
			}
			if marker == 0xDA {
				break
			}
			i += 2 + n
		}
	})
	return dht
}

// withHuffmanTables inserts the standard DHT segments before the first SOF when src has
// no DHT of its own.
func withHuffmanTables(src []byte) []byte {
	if len(src) < 4 || src[0] != 0xFF || src[1] != 0xD8 {
		return src
	}
	insertAt := -1
	for i := 2; i+4 <= len(src); {
		if src[i] != 0xFF {
			return src
		}
		marker := src[i+1]
		switch {
		case marker == 0xC4:
			return src // has its own tables
		case marker == 0xDA:
			if insertAt < 0 {
				insertAt = i
			}
			out := make([]byte, 0, len(src)+len(standardDHT()))
			out = append(out, src[:insertAt]...)
			out = append(out, standardDHT()...)
			return append(out, src[insertAt:]...)
		case marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC:
			if insertAt < 0 {
				insertAt = i
			}
		}
		n := int(src[i+2])<<8 | int(src[i+3])
		i += 2 + n
	}
	return src
}
