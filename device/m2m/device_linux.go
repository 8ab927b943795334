package m2m

import (
	"fmt"

	"github.com/camagent/camagent/device/v4l2abi"
)

// OpenDevice opens a device node (e.g. /dev/video11) non-blocking.
func OpenDevice(path string) (Device, error) {
	n, err := v4l2abi.Open(path)
	if err != nil {
		return nil, fmt.Errorf("m2m: %w", err)
	}
	return n, nil
}
