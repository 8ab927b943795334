package spec

import (
	"fmt"
	"log/slog"

	"github.com/camagent/camagent/device/encode"
	"github.com/camagent/camagent/device/m2m"
)

// m2mPath is the hardware encoder's node (a variable for tests).
var m2mPath = m2m.DefaultPath

// hardwareEncoder returns the board's hardware encoder for raw pictures, if there is one:
// the V4L2 memory-to-memory H.264 encoder of Pi Zero 2 W, 3 and 4.
func hardwareEncoder(o VideoOptions, log *slog.Logger) (func(w, h, fps int) (encode.Encoder, error), string, error) {
	if err := m2m.Available(m2mPath); err != nil {
		return nil, "", fmt.Errorf("no M2M encoder at %s: %w", m2mPath, err)
	}
	f := func(w, h, fps int) (encode.Encoder, error) {
		return m2m.Open(m2mPath, m2m.Options{Width: w, Height: h, FPS: fps, Bitrate: o.Bitrate, GOP: o.GOP, Logger: log})
	}
	return f, "hardware encoder " + m2mPath + " (V4L2 M2M)", nil
}
