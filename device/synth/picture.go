package synth

import (
	"time"

	"github.com/camagent/camagent/device/h264"
)

// Layout of the machine-readable strips. Bit i (MSB first) of a strip is macroblock i of
// its macroblock row: a 16x16 square of luma StripBlack for 0 or StripWhite for 1, with
// Cb = Cr = 128. A reader samples the centre, (16i+8, 16·row+8), and thresholds at
// StripThreshold, which survives limited-range conversion to RGB in a browser canvas.
const (
	StripMB        = 16  // side of one bit's square in pixels
	CounterRow     = 0   // macroblock row of the frame counter
	CounterBits    = 24  // low bits of the frame counter; needs Width ≥ 384
	TimeRow        = 1   // macroblock row of the capture time
	TimeBits       = 32  // low bits of the capture time in Unix milliseconds; needs Width ≥ 512
	StripBlack     = 16  // luma of a 0 bit
	StripWhite     = 235 // luma of a 1 bit
	StripThreshold = 128
)

const (
	gray     = 128
	boxSize  = 32
	boxVX    = 4 // pixels per frame, even so chroma stays aligned
	boxVY    = 2
	digitTop = 3 * 16 // the counter digits start in macroblock row 3
	// Digits are the 5x7 font scaled 4x, each in a 32x32 cell on the macroblock grid, so
	// a changed digit touches four macroblocks.
	digitScale = 4
	digitCell  = 32
)

// Box colour: saturated red in BT.601 limited range.
const boxY, boxCb, boxCr = 81, 90, 240

// Render draws the picture of frame counter into f: a mid-gray background, the counter
// and capture-time strips, the counter in large digits and a red box bouncing around.
// It is a pure function of counter and capture, and redraws every pixel; the encoder
// finds the few macroblocks that changed.
func Render(f *h264.Frame, counter uint64, capture time.Time) {
	for _, p := range [][]byte{f.Y, f.Cb, f.Cr} {
		fillBytes(p, gray)
	}
	drawStrip(f, CounterRow, CounterBits, uint64(counter))
	drawStrip(f, TimeRow, TimeBits, uint64(capture.UnixMilli()))
	drawNumber(f, counter)

	// The box bounces below the strips.
	top := 2 * StripMB
	x := bounce(int(counter%(1<<31))*boxVX, f.Width-boxSize)
	y := top + bounce(int(counter%(1<<31))*boxVY, f.Height-top-boxSize)
	fillRect(f, x&^1, y&^1, boxSize, boxSize, boxY, boxCb, boxCr)
}

// bounce maps a distance travelled to a position moving back and forth over [0, span].
func bounce(d, span int) int {
	if span <= 0 {
		return 0
	}
	d %= 2 * span
	if d > span {
		return 2*span - d
	}
	return d
}

// drawStrip draws the low bits of v, MSB first, as squares in macroblock row row. Bits
// that do not fit the frame are left out.
func drawStrip(f *h264.Frame, row, bits int, v uint64) {
	if (row+1)*StripMB > f.Height {
		return
	}
	for i := 0; i < bits && (i+1)*StripMB <= f.Width; i++ {
		luma := byte(StripBlack)
		if v>>(bits-1-i)&1 == 1 {
			luma = StripWhite
		}
		fillRect(f, i*StripMB, row*StripMB, StripMB, StripMB, luma, gray, gray)
	}
}

// ReadCounterStrip reads the strips back from a decoded luma plane with the given stride
// (the frame width). It returns 0 for a strip the frame is too narrow or short to hold.
func ReadCounterStrip(y []byte, stride int) (counter uint32, ms uint32) {
	read := func(row, bits int) uint32 {
		if stride < bits*StripMB || len(y) < ((row+1)*StripMB)*stride {
			return 0
		}
		var v uint32
		for i := 0; i < bits; i++ {
			v <<= 1
			if y[(row*StripMB+StripMB/2)*stride+i*StripMB+StripMB/2] >= StripThreshold {
				v |= 1
			}
		}
		return v
	}
	return read(CounterRow, CounterBits), read(TimeRow, TimeBits)
}

func drawNumber(f *h264.Frame, n uint64) {
	var digits [20]byte
	i := len(digits)
	for {
		i--
		digits[i] = byte(n % 10)
		n /= 10
		if n == 0 {
			break
		}
	}
	x := StripMB
	for _, d := range digits[i:] {
		if x+digitCell > f.Width || digitTop+digitCell > f.Height {
			return
		}
		drawDigit(f, x+(digitCell-5*digitScale)/2, digitTop+(digitCell-7*digitScale)/2, d)
		x += digitCell
	}
}

func drawDigit(f *h264.Frame, x0, y0 int, d byte) {
	for row, bits := range font[d] {
		for col := 0; col < 5; col++ {
			if bits>>(4-col)&1 == 1 {
				fillRect(f, x0+col*digitScale, y0+row*digitScale, digitScale, digitScale, StripWhite, gray, gray)
			}
		}
	}
}

// font holds the digits 0–9, 5 pixels wide (bit 4 is the left column) and 7 high.
var font = [10][7]byte{
	{0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110},
	{0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110},
	{0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111},
	{0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110},
	{0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010},
	{0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110},
	{0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110},
	{0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000},
	{0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110},
	{0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100},
}

// fillRect paints a rectangle clipped to the frame; x, y, w and h are even, so the
// chroma rectangle is exactly half the size.
func fillRect(f *h264.Frame, x, y, w, h int, yv, cb, cr byte) {
	x0, y0 := max(x, 0), max(y, 0)
	x1, y1 := min(x+w, f.Width), min(y+h, f.Height)
	if x0 >= x1 || y0 >= y1 {
		return
	}
	for j := y0; j < y1; j++ {
		fillBytes(f.Y[j*f.Width+x0:j*f.Width+x1], yv)
	}
	cw := f.Width / 2
	for j := y0 / 2; j < (y1+1)/2; j++ {
		fillBytes(f.Cb[j*cw+x0/2:j*cw+(x1+1)/2], cb)
		fillBytes(f.Cr[j*cw+x0/2:j*cw+(x1+1)/2], cr)
	}
}

// fillBytes sets every byte of p to v, doubling with copy, which is much faster than a
// byte loop for a whole plane.
func fillBytes(p []byte, v byte) {
	if len(p) == 0 {
		return
	}
	p[0] = v
	for n := 1; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
}
