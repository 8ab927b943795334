//go:build !linux

package v4l2

import (
	"context"
	"errors"

	"github.com/camagent/camagent/device"
)

// ErrUnsupported is returned on systems without V4L2.
var ErrUnsupported = errors.New("v4l2: only available on Linux")

// ErrClosed is returned by ReadSample after Close.
var ErrClosed = errors.New("v4l2: camera closed")

// Camera is unavailable outside Linux.
type Camera struct{}

// List finds no cameras outside Linux.
func List() ([]Info, error) { return nil, nil }

// Query fails outside Linux.
func Query(path string) (Info, error) { return Info{}, ErrUnsupported }

// ResolvePath returns p.
func ResolvePath(p string) string { return p }

// Open fails outside Linux.
func Open(path string, o Options) (*Camera, error) { return nil, ErrUnsupported }

func (c *Camera) Choice() Choice   { return Choice{} }
func (c *Camera) MimeType() string { return "video/H264" }
func (c *Camera) RequestKeyframe() {}
func (c *Camera) Close() error     { return nil }
func (c *Camera) ReadSample(context.Context) (device.Sample, error) {
	return device.Sample{}, ErrUnsupported
}
