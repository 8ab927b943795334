package v4l2

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Info describes one capture device.
type Info struct {
	Path    string // /dev/videoN
	ByID    string // its /dev/v4l/by-id link, if udev made one
	Name    string // the card name, e.g. "vivid" or "HD Pro Webcam C920"
	Driver  string
	Bus     string
	Formats []Format
}

// Format is one pixel format of a device with the sizes it offers.
type Format struct {
	FourCC      string // e.g. "YUYV", "MJPG", "H264", "NV12"
	Description string
	Sizes       []Size
}

// Size is a frame size with the frame rates offered at it. A stepwise range has
// MaxWidth/MaxHeight and steps; a discrete size has them zero.
type Size struct {
	Width, Height                              int
	MaxWidth, MaxHeight, StepWidth, StepHeight int
	Rates                                      []Rate
}

// Rate is a frame interval of Num/Den seconds (so Den/Num frames per second).
type Rate struct{ Num, Den uint32 }

// FPS is the rate in frames per second.
func (r Rate) FPS() float64 {
	if r.Num == 0 {
		return 0
	}
	return float64(r.Den) / float64(r.Num)
}

func (r Rate) String() string {
	f := r.FPS()
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.2f", f)
}

func (s Size) String() string {
	if s.MaxWidth != 0 {
		return fmt.Sprintf("%dx%d–%dx%d", s.Width, s.Height, s.MaxWidth, s.MaxHeight)
	}
	return fmt.Sprintf("%dx%d", s.Width, s.Height)
}

// fourcc turns a V4L2 pixel format code into its four characters.
// Bit 31 marks the big-endian variant of a format (V4L2_PIX_FMT_FLAG_BE_… in
// videodev2.h): it is shown as a "-BE" suffix.
func fourcc(code uint32) string {
	be := code&(1<<31) != 0
	code &^= 1 << 31
	b := []byte{byte(code), byte(code >> 8), byte(code >> 16), byte(code >> 24)}
	s := strings.TrimRight(string(b), " \x00")
	if be {
		s += "-BE"
	}
	return s
}

// code turns four characters into a V4L2 pixel format code.
func code(fcc string) uint32 {
	b := []byte(fcc + "    ")[:4]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// Pixel formats the package can use, by the names Options.Format accepts.
var formatNames = map[string]string{
	"h264": "H264", "mjpeg": "MJPG", "mjpg": "MJPG", "jpeg": "JPEG",
	"yuyv": "YUYV", "nv12": "NV12", "i420": "YU12", "yu12": "YU12", "yv12": "YV12",
}

// rawRank orders the raw formats from cheapest to convert to dearest.
var rawRank = map[string]int{"YU12": 0, "NV12": 1, "YV12": 2, "YUYV": 3, "MJPG": 4, "JPEG": 5}

// Choice is what Choose picked.
type Choice struct {
	FourCC        string
	Width, Height int
	Rate          Rate // zero: leave the device's rate
}

// Passthrough reports whether the choice needs no encoder.
func (c Choice) Passthrough() bool { return c.FourCC == "H264" }

func (c Choice) String() string {
	s := fmt.Sprintf("%s %dx%d", c.FourCC, c.Width, c.Height)
	if c.Rate.Num != 0 {
		s += "@" + c.Rate.String()
	}
	return s
}

// Choose picks a format, size and rate from formats for the wanted size and rate
// (zero: 640x480 at 30). format ("" for any; else a name such as "yuyv", "mjpeg",
// "h264") restricts the pixel format; passthrough says whether H.264 from the camera is
// acceptable (it is preferred when it is), raw whether encoding raw pictures is.
//
// Order of preference: H.264 (no encoding at all); then the size nearest the wanted one
// (a stepwise range gives it exactly); then the rate nearest at or above the wanted one;
// then the cheapest raw format to convert.
func Choose(formats []Format, format string, width, height, fps int, passthrough, raw bool) (Choice, error) {
	if width <= 0 || height <= 0 {
		width, height = 640, 480
	}
	if fps <= 0 {
		fps = 30
	}
	want := ""
	if format != "" {
		var ok bool
		if want, ok = formatNames[strings.ToLower(format)]; !ok {
			return Choice{}, fmt.Errorf("v4l2: unknown format %q (want h264, mjpeg, yuyv, nv12, i420 or yv12)", format)
		}
	}
	type cand struct {
		c                  Choice
		h264               bool
		sizeCost, rateCost float64
		rank               int
	}
	var cands []cand
	for _, f := range formats {
		_, usable := rawRank[f.FourCC]
		isH264 := f.FourCC == "H264"
		if want != "" && f.FourCC != want || !(isH264 && passthrough || usable && raw) {
			continue
		}
		for _, s := range f.Sizes {
			w, h := s.Width, s.Height
			if s.MaxWidth != 0 {
				w = fit(width, s.Width, s.MaxWidth, s.StepWidth)
				h = fit(height, s.Height, s.MaxHeight, s.StepHeight)
			}
			if w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 {
				continue
			}
			sizeCost := math.Abs(math.Log(float64(w*h)/float64(width*height))) + math.Abs(float64(w-width))/float64(width)/10
			rate, rateCost := pickRate(s.Rates, fps)
			cands = append(cands, cand{Choice{f.FourCC, w, h, rate}, isH264, sizeCost, rateCost, rawRank[f.FourCC]})
		}
	}
	if len(cands) == 0 {
		var have []string
		for _, f := range formats {
			have = append(have, f.FourCC)
		}
		return Choice{}, fmt.Errorf("v4l2: no usable format (camera offers %s; format %q, passthrough %v, encode %v)",
			strings.Join(have, ", "), format, passthrough, raw)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.h264 != b.h264 {
			return a.h264
		}
		if math.Abs(a.sizeCost-b.sizeCost) > 1e-9 {
			return a.sizeCost < b.sizeCost
		}
		if math.Abs(a.rateCost-b.rateCost) > 1e-9 {
			return a.rateCost < b.rateCost
		}
		return a.rank < b.rank
	})
	return cands[0].c, nil
}

// fit clamps v into [lo, hi] on the step grid from lo.
func fit(v, lo, hi, step int) int {
	v = min(max(v, lo), hi)
	if step > 1 {
		v = lo + (v-lo)/step*step
	}
	return v
}

// pickRate returns the rate nearest fps, preferring faster over slower (a camera can be
// read slower, not faster), and its cost.
func pickRate(rates []Rate, fps int) (Rate, float64) {
	var best Rate
	bestCost := math.Inf(1)
	for _, r := range rates {
		f := r.FPS()
		if f <= 0 {
			continue
		}
		cost := f - float64(fps)
		if cost < 0 {
			cost = -cost * 4
		}
		if cost < bestCost {
			best, bestCost = r, cost
		}
	}
	if best.Num == 0 {
		return Rate{}, 0
	}
	return best, bestCost
}
