package encode

import (
	"fmt"
	"math"
	"time"

	"github.com/camagent/camagent/device/h264"
)

// Encoder codes I420 pictures of one size into H.264 access units (Annex-B).
type Encoder interface {
	// Encode codes one picture; forceIDR makes it an IDR with SPS and PPS in front.
	Encode(f *h264.Frame, forceIDR bool, capture time.Time) ([]byte, error)
	// Name says which encoder this is, for logs and `camagent devices`.
	Name() string
	Close() error
}

// Software is the pure-Go lossless encoder of device/h264.
type Software struct {
	enc     *h264.Encoder
	counter uint64
}

// NewSoftware returns the pure-Go encoder for width×height at fps with an IDR every gop
// (default 2 s).
func NewSoftware(width, height, fps int, gop time.Duration) (*Software, error) {
	if fps <= 0 {
		fps = 30
	}
	if gop <= 0 {
		gop = 2 * time.Second
	}
	enc, err := h264.NewEncoder(width, height, fps)
	if err != nil {
		return nil, fmt.Errorf("software encoder: %w", err)
	}
	enc.SetIDRInterval(max(1, int(math.Round(gop.Seconds()*float64(fps)))))
	return &Software{enc: enc}, nil
}

// Encode implements Encoder; every access unit carries its counter and capture time in an
// SEI (h264.ParseFrameInfo).
func (s *Software) Encode(f *h264.Frame, forceIDR bool, capture time.Time) ([]byte, error) {
	au, err := s.enc.Encode(f, forceIDR, h264.FrameInfo{Counter: s.counter, CaptureTime: capture})
	if err != nil {
		return nil, err
	}
	s.counter++
	return au, nil
}

// Name is "software (pure Go, lossless)".
func (s *Software) Name() string { return "software (pure Go, lossless)" }

// Close releases nothing; it exists for the interface.
func (s *Software) Close() error { return nil }
