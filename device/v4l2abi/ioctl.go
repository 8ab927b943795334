package v4l2abi

import (
	"time"
	"unsafe"
)

// IOC builds a V4L2 ioctl request number (type 'V') the way asm-generic/ioctl.h does: the
// same encoding on x86, arm and arm64; the size makes some numbers differ by word size.
func IOC(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | 'V'<<8 | nr }

// Directions of a request, from the caller's side.
const (
	IOCWrite     = 1
	IOCRead      = 2
	IOCReadWrite = IOCRead | IOCWrite
)

// Request numbers (videodev2.h).
var (
	VidiocQuerycap  = IOC(IOCRead, 0, unsafe.Sizeof(Capability{}))
	VidiocGFmt      = IOC(IOCReadWrite, 4, FormatSize)
	VidiocSFmt      = IOC(IOCReadWrite, 5, FormatSize)
	VidiocReqbufs   = IOC(IOCReadWrite, 8, unsafe.Sizeof(RequestBuffers{}))
	VidiocQuerybuf  = IOC(IOCReadWrite, 9, unsafe.Sizeof(Buffer{}))
	VidiocQbuf      = IOC(IOCReadWrite, 15, unsafe.Sizeof(Buffer{}))
	VidiocDqbuf     = IOC(IOCReadWrite, 17, unsafe.Sizeof(Buffer{}))
	VidiocStreamon  = IOC(IOCWrite, 18, 4)
	VidiocStreamoff = IOC(IOCWrite, 19, 4)
	VidiocSParm     = IOC(IOCReadWrite, 22, unsafe.Sizeof(StreamParm{}))
	VidiocSCtrl     = IOC(IOCReadWrite, 28, unsafe.Sizeof(Control{}))
)

// RequestName names a request for errors and fakes.
func RequestName(req uintptr) string {
	switch req {
	case VidiocQuerycap:
		return "VIDIOC_QUERYCAP"
	case VidiocGFmt:
		return "VIDIOC_G_FMT"
	case VidiocSFmt:
		return "VIDIOC_S_FMT"
	case VidiocReqbufs:
		return "VIDIOC_REQBUFS"
	case VidiocQuerybuf:
		return "VIDIOC_QUERYBUF"
	case VidiocQbuf:
		return "VIDIOC_QBUF"
	case VidiocDqbuf:
		return "VIDIOC_DQBUF"
	case VidiocStreamon:
		return "VIDIOC_STREAMON"
	case VidiocStreamoff:
		return "VIDIOC_STREAMOFF"
	case VidiocSParm:
		return "VIDIOC_S_PARM"
	case VidiocSCtrl:
		return "VIDIOC_S_CTRL"
	}
	return "ioctl?"
}

// Ioctler performs V4L2 requests: a device node, or a fake of one.
type Ioctler interface {
	// Ioctl performs a V4L2 request on arg (a pointer to the request's struct).
	Ioctl(req uintptr, arg unsafe.Pointer) error
}

// Device is a V4L2 device node as its drivers here use it: its ioctls, mmap and poll. Open
// returns the real node; tests pass a fake.
type Device interface {
	Ioctler
	// Mmap maps length bytes of a buffer at the offset QUERYBUF returned.
	Mmap(offset int64, length int) ([]byte, error)
	Munmap(b []byte) error
	// Poll waits until a buffer can be dequeued (in) or an output buffer is done (out).
	Poll(timeout time.Duration) (in, out bool, err error)
	Close() error
}

// QueryCap asks d for its capabilities (VIDIOC_QUERYCAP).
func QueryCap(d Ioctler) (Capability, error) {
	var c Capability
	err := d.Ioctl(VidiocQuerycap, unsafe.Pointer(&c))
	return c, err
}

// GetFormat reads the format of buffer type typ (VIDIOC_G_FMT).
func GetFormat(d Ioctler, typ uint32) (Format, error) {
	var f Format
	f.SetType(typ)
	err := d.Ioctl(VidiocGFmt, unsafe.Pointer(&f[0]))
	return f, err
}

// SetControl sets control id to value (VIDIOC_S_CTRL).
func SetControl(d Ioctler, id uint32, value int32) error {
	c := Control{ID: id, Value: value}
	return d.Ioctl(VidiocSCtrl, unsafe.Pointer(&c))
}
