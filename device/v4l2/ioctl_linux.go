package v4l2

import (
	"fmt"
	"unsafe"

	"github.com/camagent/camagent/device/v4l2abi"
	"golang.org/x/sys/unix"
)

// node is a descriptor of the camera's node as a v4l2abi.Ioctler, for the few queries and
// controls blackjack/webcam lacks (the capture itself is the library's).
type node int

func (n node) Ioctl(req uintptr, arg unsafe.Pointer) error { return v4l2abi.Ioctl(int(n), req, arg) }

func (n node) Close() error { return unix.Close(int(n)) }

// getFormat reads the capture format with VIDIOC_G_FMT.
func getFormat(d v4l2abi.Ioctler) (v4l2abi.PixFormat, error) {
	f, err := v4l2abi.GetFormat(d, v4l2abi.BufTypeVideoCapture)
	if err != nil {
		return v4l2abi.PixFormat{}, fmt.Errorf("VIDIOC_G_FMT: %w", err)
	}
	return f.Pix(), nil
}
