//go:build !linux

package m2m

import "errors"

// OpenDevice fails outside Linux.
func OpenDevice(path string) (Device, error) {
	return nil, errors.New("m2m: V4L2 encoders exist only on Linux")
}
