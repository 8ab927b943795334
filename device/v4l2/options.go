package v4l2

import (
	"log/slog"
	"time"

	"github.com/camagent/camagent/device/encode"
)

// Options configure Open; the zero value picks everything automatically.
type Options struct {
	// Width, Height, FPS: the wanted picture size and rate (default 640x480 at 30).
	Width, Height, FPS int
	// Format restricts the pixel format: "" (automatic), h264, mjpeg, yuyv, nv12, i420, yv12.
	Format string
	// Encoder is auto (H.264 from the camera when it offers it, else encode), passthrough
	// (H.264 from the camera only) or software (always encode raw pictures).
	Encoder string
	// NewEncoder makes the encoder for raw pictures (default: encode.NewSoftware with a
	// 2 s IDR period).
	NewEncoder func(width, height, fps int) (encode.Encoder, error)
	// Buffers is the number of V4L2 buffers (default 3; at least 2, at most 4).
	Buffers int
	// StallTimeout fails ReadSample when no picture comes for this long (default 5 s).
	StallTimeout time.Duration
	// Logger receives what was chosen and why (component=v4l2). Nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.NewEncoder == nil {
		o.NewEncoder = func(w, h, fps int) (encode.Encoder, error) { return encode.NewSoftware(w, h, fps, 0) }
	}
	if o.Buffers == 0 {
		o.Buffers = 3
	}
	o.Buffers = min(max(o.Buffers, 2), 4)
	if o.StallTimeout <= 0 {
		o.StallTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
