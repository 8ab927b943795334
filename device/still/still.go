// Package still makes snapshots: Latest keeps a copy of the last picture a camera
// delivered, and JPEG turns a device.Picture into a JPEG of bounded width and size, in
// pure Go (image/jpeg). A camera's own JPEG (MJPEG) is passed through untouched when it
// fits; other pictures are scaled down by area averaging and encoded, the quality
// stepping down (and then the size) until the bytes fit.
//
// Latest is safe for one writer (the camera's reader) and any number of readers.
package still

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"sync"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/h264"
)

// Latest keeps a copy of a camera's latest picture. The zero value is empty.
type Latest struct {
	mu      sync.Mutex
	frame   *h264.Frame
	jpeg    []byte
	capture time.Time
}

// Keep copies f, and jpeg when the camera gave one for the same picture, as the latest.
func (l *Latest) Keep(f *h264.Frame, jpeg []byte, capture time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frame == nil || l.frame.Width != f.Width || l.frame.Height != f.Height {
		l.frame = h264.NewFrame(f.Width, f.Height)
	}
	copy(l.frame.Y, f.Y)
	copy(l.frame.Cb, f.Cb)
	copy(l.frame.Cr, f.Cr)
	l.jpeg = append(l.jpeg[:0], jpeg...)
	l.capture = capture
}

// Picture returns a copy of the latest picture, device.ErrNoPicture before the first Keep.
func (l *Latest) Picture() (device.Picture, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frame == nil {
		return device.Picture{}, device.ErrNoPicture
	}
	f := h264.NewFrame(l.frame.Width, l.frame.Height)
	copy(f.Y, l.frame.Y)
	copy(f.Cb, l.frame.Cb)
	copy(f.Cr, l.frame.Cr)
	p := device.Picture{Image: FrameImage(f), CaptureTime: l.capture}
	if len(l.jpeg) > 0 {
		p.JPEG = bytes.Clone(l.jpeg)
	}
	return p, nil
}

// FrameImage shows an I420 frame as an *image.YCbCr sharing its planes.
func FrameImage(f *h264.Frame) *image.YCbCr {
	return &image.YCbCr{Y: f.Y, Cb: f.Cb, Cr: f.Cr, YStride: f.Width, CStride: f.Width / 2,
		SubsampleRatio: image.YCbCrSubsampleRatio420, Rect: image.Rect(0, 0, f.Width, f.Height)}
}

// Options bound a JPEG.
type Options struct {
	MaxWidth int // pixels; 0: the picture's own width
	MaxBytes int // 0: no limit
	Quality  int // the first quality tried, 1–100; default 85
}

// Result is a finished JPEG.
type Result struct {
	JPEG          []byte
	Width, Height int
	Quality       int  // the quality used; 0 when the camera's JPEG was passed through
	Passthrough   bool // the camera's own JPEG, untouched
}

// minWidth is the narrowest picture JPEG shrinks to when fitting MaxBytes.
const minWidth = 64

// qualities is the ladder tried, from Options.Quality down, before the size is reduced.
var qualities = []int{85, 75, 60, 45, 30}

// JPEG encodes p within o.
func JPEG(p device.Picture, o Options) (Result, error) {
	if len(p.JPEG) > 0 && (o.MaxBytes == 0 || len(p.JPEG) <= o.MaxBytes) {
		if cfg, err := jpeg.DecodeConfig(bytes.NewReader(p.JPEG)); err == nil && (o.MaxWidth == 0 || cfg.Width <= o.MaxWidth) {
			return Result{JPEG: p.JPEG, Width: cfg.Width, Height: cfg.Height, Passthrough: true}, nil
		}
	}
	img := p.Image
	if img == nil && len(p.JPEG) > 0 {
		var err error
		if img, err = jpeg.Decode(bytes.NewReader(p.JPEG)); err != nil {
			return Result{}, fmt.Errorf("still: decode the camera's JPEG: %w", err)
		}
	}
	if img == nil || img.Bounds().Empty() {
		return Result{}, errors.New("still: no picture")
	}
	b := img.Bounds()
	w := b.Dx()
	if o.MaxWidth > 0 && w > o.MaxWidth {
		w = o.MaxWidth
	}
	q0 := o.Quality
	if q0 <= 0 || q0 > 100 {
		q0 = qualities[0]
	}
	for {
		h := max(1, (b.Dy()*w+b.Dx()/2)/b.Dx())
		scaled := Scale(img, w, h)
		var buf bytes.Buffer
		for _, q := range append([]int{q0}, qualities...) {
			if q > q0 {
				continue
			}
			buf.Reset()
			if err := jpeg.Encode(&buf, scaled, &jpeg.Options{Quality: q}); err != nil {
				return Result{}, fmt.Errorf("still: encode %dx%d: %w", w, h, err)
			}
			if o.MaxBytes == 0 || buf.Len() <= o.MaxBytes {
				return Result{JPEG: buf.Bytes(), Width: w, Height: h, Quality: q}, nil
			}
		}
		if w <= minWidth {
			return Result{}, fmt.Errorf("still: no JPEG of this picture fits %d bytes (%d at %dx%d)", o.MaxBytes, buf.Len(), w, h)
		}
		w = max(minWidth, w*3/4)
	}
}

// Scale returns img scaled to w×h by averaging the source pixels each output pixel covers
// (a box filter: no aliasing when shrinking, which is all snapshots do), as 4:2:0 YCbCr.
// A picture already of that size is returned as it is when it is YCbCr.
func Scale(img image.Image, w, h int) image.Image {
	src, ok := img.(*image.YCbCr)
	if !ok {
		src = toYCbCr(img)
	}
	b := src.Bounds()
	if b.Dx() == w && b.Dy() == h {
		return src
	}
	dst := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	y0, c0 := src.YOffset(b.Min.X, b.Min.Y), src.COffset(b.Min.X, b.Min.Y)
	scalePlane(dst.Y, dst.YStride, w, h, src.Y[y0:], src.YStride, b.Dx(), b.Dy())
	cw, ch := chromaSize(src.SubsampleRatio, b.Dx(), b.Dy())
	dcw, dch := (w+1)/2, (h+1)/2
	scalePlane(dst.Cb, dst.CStride, dcw, dch, src.Cb[c0:], src.CStride, cw, ch)
	scalePlane(dst.Cr, dst.CStride, dcw, dch, src.Cr[c0:], src.CStride, cw, ch)
	return dst
}

// chromaSize is the size of a w×h picture's chroma planes.
func chromaSize(r image.YCbCrSubsampleRatio, w, h int) (int, int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h // 4:4:4
}

// scalePlane averages the sw×sh plane src into the dw×dh plane dst.
func scalePlane(dst []byte, dstride, dw, dh int, src []byte, sstride, sw, sh int) {
	for y := 0; y < dh; y++ {
		sy0, sy1 := y*sh/dh, max((y+1)*sh/dh, y*sh/dh+1)
		for x := 0; x < dw; x++ {
			sx0, sx1 := x*sw/dw, max((x+1)*sw/dw, x*sw/dw+1)
			sum := 0
			for sy := sy0; sy < sy1; sy++ {
				row := src[sy*sstride:]
				for sx := sx0; sx < sx1; sx++ {
					sum += int(row[sx])
				}
			}
			n := (sy1 - sy0) * (sx1 - sx0)
			dst[y*dstride+x] = byte((sum + n/2) / n)
		}
	}
}

// toYCbCr converts any image (a grayscale or CMYK JPEG) to 4:4:4 YCbCr.
func toYCbCr(img image.Image) *image.YCbCr {
	b := img.Bounds()
	out := image.NewYCbCr(image.Rect(0, 0, b.Dx(), b.Dy()), image.YCbCrSubsampleRatio444)
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			c := color.YCbCrModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.YCbCr)
			i := y*out.YStride + x
			out.Y[i], out.Cb[i], out.Cr[i] = c.Y, c.Cb, c.Cr
		}
	}
	return out
}
