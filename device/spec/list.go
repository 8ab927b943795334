package spec

import (
	"fmt"
	"io"
	"strings"

	"github.com/camagent/camagent/device/alsa"
	"github.com/camagent/camagent/device/v4l2"
)

// List prints the machine's cameras (with their formats, sizes and frame rates),
// microphones and speakers, each with the SPEC that selects it; it is `camagent devices`.
func List(w io.Writer) error {
	cams, err := v4l2.List()
	if err != nil {
		return fmt.Errorf("list cameras: %w", err)
	}
	pcms, err := alsa.ListDevices()
	if err != nil {
		return fmt.Errorf("list sound devices: %w", err)
	}
	return writeList(w, cams, pcms)
}

func writeList(w io.Writer, cams []v4l2.Info, pcms []alsa.Device) error {
	var b strings.Builder
	b.WriteString("cameras:\n")
	b.WriteString("  test  synthetic test pattern (H.264)\n")
	for _, c := range cams {
		if libcameraDrivers[c.Driver] {
			// The Pi's CSI receiver and ISP nodes give raw Bayer or need libcamera's tuning.
			fmt.Fprintf(&b, "  (%s %s: a Pi camera pipeline node; use the camera through rpicam)\n", c.Path, c.Driver)
			continue
		}
		fmt.Fprintf(&b, "  v4l2:%s  %s (driver %s, %s)\n", c.Path, c.Name, c.Driver, c.Bus)
		if c.ByID != "" {
			fmt.Fprintf(&b, "      also v4l2:%s\n", c.ByID)
		}
		for _, f := range c.Formats {
			use := "encode"
			if f.FourCC == "H264" {
				use = "passthrough"
			}
			if !usable(f.FourCC) {
				use = "not usable"
			}
			fmt.Fprintf(&b, "      %-4s %s [%s]\n", f.FourCC, f.Description, use)
			for _, s := range f.Sizes {
				rates := make([]string, len(s.Rates))
				for i, r := range s.Rates {
					rates[i] = r.String()
				}
				if len(rates) == 0 {
					fmt.Fprintf(&b, "          %s\n", s)
				} else {
					fmt.Fprintf(&b, "          %s @ %s fps\n", s, strings.Join(rates, ", "))
				}
			}
		}
	}
	if _, err := whichCommand("rpicam-vid"); err == nil {
		b.WriteString("  rpicam  the CSI camera through rpicam-vid\n")
	}
	b.WriteString("microphones:\n")
	b.WriteString("  test  synthetic tone\n")
	for _, d := range pcms {
		if d.Capture {
			fmt.Fprintf(&b, "  alsa:%s  %s: %s\n", d.PCM(), d.CardName, d.Name)
		}
	}
	b.WriteString("speakers:\n")
	b.WriteString("  wav:PATH  a WAV file (48 kHz mono)\n")
	for _, d := range pcms {
		if d.Playback {
			fmt.Fprintf(&b, "  alsa:%s  %s: %s\n", d.PCM(), d.CardName, d.Name)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// libcameraDrivers are the V4L2 drivers of the Pi's camera pipelines (Pi ≤ 4: unicam and
// the ISP; Pi 5: the RP1 CFE and the PiSP back end): their nodes are for libcamera.
var libcameraDrivers = map[string]bool{"unicam": true, "bcm2835-isp": true, "rp1-cfe": true, "pispbe": true}

func usable(fourcc string) bool {
	switch fourcc {
	case "H264", "YUYV", "NV12", "YU12", "YV12", "MJPG", "JPEG":
		return true
	}
	return false
}
