package m2m

import (
	"time"
	"unsafe"
)

// Device is the kernel interface the encoder uses: the device node's ioctls, mmap and
// poll. Open uses the real node; tests pass a fake.
type Device interface {
	// Ioctl performs a V4L2 request on arg (a pointer to the request's struct).
	Ioctl(req uintptr, arg unsafe.Pointer) error
	// Mmap maps length bytes of a buffer at the offset QUERYBUF returned.
	Mmap(offset int64, length int) ([]byte, error)
	Munmap(b []byte) error
	// Poll waits until a CAPTURE buffer is ready (in) or an OUTPUT buffer is done (out).
	Poll(timeout time.Duration) (in, out bool, err error)
	Close() error
}
