package v4l2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capability bits of struct v4l2_capability (videodev2.h).
const (
	capVideoCapture       = 0x00000001
	capVideoCaptureMPlane = 0x00001000
	capVideoM2MMPlane     = 0x00004000
	capVideoM2M           = 0x00008000
	capStreaming          = 0x04000000
	capDeviceCaps         = 0x80000000
	bufTypeVideoCapture   = 1
)

// Control ids (v4l2-controls.h): V4L2_CID_CODEC_BASE = 0x00990900.
const (
	cidForceKeyFrame = 0x00990900 + 229
)

// ioc builds an ioctl request number the way asm-generic/ioctl.h does (the same on
// x86, arm and arm64).
func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

const (
	iocWrite = 1
	iocRead  = 2
)

// capability mirrors struct v4l2_capability (104 bytes, no pointers: one layout on every
// architecture).
type capability struct {
	Driver       [16]byte
	Card         [32]byte
	BusInfo      [32]byte
	Version      uint32
	Capabilities uint32
	DeviceCaps   uint32
	Reserved     [3]uint32
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

func queryCap(fd int) (capability, error) {
	var c capability
	err := ioctl(fd, ioc(iocRead, 'V', 0, unsafe.Sizeof(c)), unsafe.Pointer(&c))
	return c, err
}

// caps returns the capabilities of this device node (device_caps when the driver sets
// it, else the whole device's).
func (c capability) caps() uint32 {
	if c.Capabilities&capDeviceCaps != 0 {
		return c.DeviceCaps
	}
	return c.Capabilities
}

// pixFormat is the start of struct v4l2_pix_format.
type pixFormat struct {
	Width, Height, PixelFormat, Field, BytesPerLine, SizeImage uint32
}

// getFormat reads the capture format with VIDIOC_G_FMT. struct v4l2_format is a u32
// type and a 200-byte union aligned like a pointer (it holds struct v4l2_window): the
// union starts at 8 on 64-bit and at 4 on 32-bit systems.
func getFormat(fd int) (pixFormat, error) {
	align := unsafe.Sizeof(uintptr(0))
	buf := make([]byte, align+200)
	binary.NativeEndian.PutUint32(buf, bufTypeVideoCapture)
	if err := ioctl(fd, ioc(iocRead|iocWrite, 'V', 4, uintptr(len(buf))), unsafe.Pointer(&buf[0])); err != nil {
		return pixFormat{}, fmt.Errorf("VIDIOC_G_FMT: %w", err)
	}
	var p pixFormat
	u := buf[align:]
	for i, f := range []*uint32{&p.Width, &p.Height, &p.PixelFormat, &p.Field, &p.BytesPerLine, &p.SizeImage} {
		*f = binary.NativeEndian.Uint32(u[4*i:])
	}
	return p, nil
}

// control mirrors struct v4l2_control.
type control struct {
	ID    uint32
	Value int32
}

func setControl(fd int, id uint32, value int32) error {
	c := control{ID: id, Value: value}
	return ioctl(fd, ioc(iocRead|iocWrite, 'V', 28, unsafe.Sizeof(c)), unsafe.Pointer(&c))
}
