package v4l2

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/blackjack/webcam"
	"github.com/camagent/camagent/device/v4l2abi"
	"golang.org/x/sys/unix"
)

// List returns the machine's capture devices sorted by path; a machine without any
// returns none and no error. Devices that cannot be opened (busy, no permission) are
// listed with their name only when QUERYCAP works, else skipped.
func List() ([]Info, error) {
	paths, err := filepath.Glob("/dev/video*")
	if err != nil {
		return nil, err
	}
	sort.Slice(paths, func(i, j int) bool { return devNum(paths[i]) < devNum(paths[j]) })
	byID := byIDLinks()
	var out []Info
	for _, p := range paths {
		info, err := Query(p)
		if err != nil {
			continue // not a capture device, or gone
		}
		info.ByID = byID[p]
		out = append(out, info)
	}
	return out, nil
}

func devNum(p string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(p, "/dev/video"))
	if err != nil {
		return 1 << 30
	}
	return n
}

// byIDLinks maps /dev/videoN to its /dev/v4l/by-id link.
func byIDLinks() map[string]string {
	m := map[string]string{}
	links, _ := filepath.Glob("/dev/v4l/by-id/*")
	for _, l := range links {
		if t, err := filepath.EvalSymlinks(l); err == nil {
			if _, dup := m[t]; !dup {
				m[t] = l
			}
		}
	}
	return m
}

// ResolvePath turns a /dev/v4l/by-id or by-path link into its /dev/videoN.
func ResolvePath(p string) string {
	if t, err := filepath.EvalSymlinks(p); err == nil {
		return t
	}
	return p
}

// isCapture opens path just long enough for VIDIOC_QUERYCAP.
func isCapture(path string) (v4l2abi.Capability, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return v4l2abi.Capability{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	c, err := v4l2abi.QueryCap(node(fd))
	if err != nil {
		return c, fmt.Errorf("v4l2: %s: VIDIOC_QUERYCAP: %w", path, err)
	}
	caps := c.Caps()
	if caps&v4l2abi.CapVideoCapture == 0 || caps&(v4l2abi.CapVideoM2M|v4l2abi.CapVideoM2MMPlane) != 0 {
		return c, fmt.Errorf("v4l2: %s (%s) is not a video capture device", path, v4l2abi.CString(c.Card[:]))
	}
	if caps&v4l2abi.CapStreaming == 0 {
		return c, fmt.Errorf("v4l2: %s (%s) has no streaming I/O", path, v4l2abi.CString(c.Card[:]))
	}
	return c, nil
}

// Query describes one capture device: its name and every format, size and rate.
func Query(path string) (Info, error) {
	path = ResolvePath(path)
	c, err := isCapture(path)
	if err != nil {
		return Info{}, err
	}
	info := Info{Path: path, Name: v4l2abi.CString(c.Card[:]), Driver: v4l2abi.CString(c.Driver[:]), Bus: v4l2abi.CString(c.BusInfo[:])}
	cam, err := openWebcam(path)
	if err != nil {
		return info, fmt.Errorf("v4l2: open %s: %w", path, err)
	}
	defer cam.Close()
	info.Formats = formatsOf(cam)
	return info, nil
}

// formatsOf enumerates a device's formats, sizes and rates, in the driver's order.
func formatsOf(cam capturer) []Format {
	var out []Format
	descs := cam.GetSupportedFormats()
	codes := make([]webcam.PixelFormat, 0, len(descs))
	for c := range descs {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		ri, oki := rawRank[fourcc(uint32(codes[i]))]
		rj, okj := rawRank[fourcc(uint32(codes[j]))]
		if fourcc(uint32(codes[i])) == "H264" {
			ri, oki = -1, true
		}
		if fourcc(uint32(codes[j])) == "H264" {
			rj, okj = -1, true
		}
		if oki != okj {
			return oki
		}
		if ri != rj {
			return ri < rj
		}
		return codes[i] < codes[j]
	})
	for _, pf := range codes {
		f := Format{FourCC: fourcc(uint32(pf)), Description: descs[pf]}
		for _, fs := range cam.GetSupportedFrameSizes(pf) {
			if fs.MaxWidth == 0 || fs.MaxHeight == 0 {
				continue
			}
			s := Size{Width: int(fs.MinWidth), Height: int(fs.MinHeight)}
			if fs.StepWidth != 0 || fs.StepHeight != 0 || fs.MinWidth != fs.MaxWidth || fs.MinHeight != fs.MaxHeight {
				s.MaxWidth, s.MaxHeight = int(fs.MaxWidth), int(fs.MaxHeight)
				s.StepWidth, s.StepHeight = int(fs.StepWidth), int(fs.StepHeight)
			}
			for _, r := range cam.GetSupportedFramerates(pf, fs.MaxWidth, fs.MaxHeight) {
				if r.StepNumerator == 0 && r.StepDenominator == 0 {
					s.Rates = append(s.Rates, Rate{Num: r.MinNumerator, Den: r.MinDenominator})
				} else {
					// A stepwise interval range: offer its fastest and slowest ends.
					s.Rates = append(s.Rates, Rate{Num: r.MinNumerator, Den: r.MinDenominator},
						Rate{Num: r.MaxNumerator, Den: r.MaxDenominator})
				}
			}
			f.Sizes = append(f.Sizes, s)
		}
		out = append(out, f)
	}
	return out
}
