// Package v4l2abi is the V4L2 kernel ABI as this project uses it, defined once: ioctl request
// numbers, the structs they take (laid out as videodev2.h lays them out on 64-bit and 32-bit
// systems), capability bits, buffer types and flags, control ids, and the ioctl call that
// retries EINTR. device/v4l2 (capture) and device/m2m (the hardware encoder) both use it.
//
// The Device interface is the seam between a driver of a device node and the kernel: Open
// returns the real node; tests give a fake.
package v4l2abi

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

// Capability bits of struct v4l2_capability (videodev2.h).
const (
	CapVideoCapture       = 0x00000001
	CapVideoCaptureMPlane = 0x00001000
	CapVideoM2MMPlane     = 0x00004000
	CapVideoM2M           = 0x00008000
	CapStreaming          = 0x04000000
	CapDeviceCaps         = 0x80000000
)

// Buffer types, memory, field order and buffer flags (videodev2.h).
const (
	BufTypeVideoCapture  = 1
	BufTypeCaptureMPlane = 9
	BufTypeOutputMPlane  = 10
	MemoryMMAP           = 1
	FieldNone            = 1

	BufFlagKeyframe = 0x00000008
	BufFlagLast     = 0x00100000
)

// FourCC packs a four-character pixel format code as V4L2 does (first character lowest).
func FourCC(s string) uint32 {
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// Pixel formats.
var (
	PixFmtH264 = FourCC("H264")
	PixFmtYU12 = FourCC("YU12")
)

// Controls (v4l2-controls.h; V4L2_CID_CODEC_BASE = 0x00990900) and the H.264 values used.
const (
	CIDCodecBase       = 0x00990900
	CIDBitrate         = CIDCodecBase + 207
	CIDRepeatSeqHeader = CIDCodecBase + 226
	CIDForceKeyFrame   = CIDCodecBase + 229
	CIDH264IPeriod     = CIDCodecBase + 358
	CIDH264Level       = CIDCodecBase + 359
	CIDH264Profile     = CIDCodecBase + 363

	H264ProfileConstrainedBaseline = 1
	H264Level30                    = 8
	H264Level31                    = 9
	H264Level40                    = 11
	H264Level42                    = 13
)

// Capability mirrors struct v4l2_capability (104 bytes, no pointers: one layout on every
// architecture).
type Capability struct {
	Driver       [16]byte
	Card         [32]byte
	BusInfo      [32]byte
	Version      uint32
	Capabilities uint32
	DeviceCaps   uint32
	Reserved     [3]uint32
}

// Caps returns the capabilities of this device node (device_caps when the driver sets it,
// else the whole device's).
func (c *Capability) Caps() uint32 {
	if c.Capabilities&CapDeviceCaps != 0 {
		return c.DeviceCaps
	}
	return c.Capabilities
}

// CString returns a NUL-terminated field (Driver, Card, BusInfo) as a string.
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// RequestBuffers mirrors struct v4l2_requestbuffers.
type RequestBuffers struct {
	Count        uint32
	Type         uint32
	Memory       uint32
	Capabilities uint32
	Flags        uint8
	Reserved     [3]uint8
}

// Plane mirrors struct v4l2_plane: M is the union of mem_offset (u32), userptr (unsigned
// long) and fd (s32), so it is long-sized.
type Plane struct {
	BytesUsed  uint32
	Length     uint32
	M          uintptr
	DataOffset uint32
	Reserved   [11]uint32
}

// Buffer mirrors struct v4l2_buffer: the timestamp is a struct timeval of two longs and M
// the union whose planes member (the one multi-planar queues use) is a pointer; as an
// unsafe.Pointer the garbage collector sees it too.
type Buffer struct {
	Index, Type, BytesUsed, Flags, Field uint32
	Sec, Usec                            uintptr
	Timecode                             [16]byte
	Sequence                             uint32
	Memory                               uint32
	M                                    unsafe.Pointer
	Length                               uint32
	Reserved2                            uint32
	RequestFD                            uint32
}

// Control mirrors struct v4l2_control.
type Control struct {
	ID    uint32
	Value int32
}

// StreamParm mirrors struct v4l2_streamparm (no pointers: 204 bytes everywhere); for an
// OUTPUT queue the union starts with struct v4l2_outputparm: capability, outputmode,
// timeperframe{numerator, denominator}.
type StreamParm struct {
	Type uint32
	Parm [200]byte
}

// FormatSize is sizeof(struct v4l2_format): a u32 type and a 200-byte union aligned like a
// pointer (it holds struct v4l2_window), so the union starts at 8 on 64-bit and at 4 on
// 32-bit systems.
const FormatSize = unsafe.Sizeof(uintptr(0)) + 200

// formatUnion is the offset of struct v4l2_format's union.
const formatUnion = unsafe.Sizeof(uintptr(0))

// Format is struct v4l2_format as bytes; its union's members are read and written at their
// offsets (they are packed).
type Format [FormatSize]byte

// Type is the format's buffer type.
func (f *Format) Type() uint32 { return binary.NativeEndian.Uint32(f[0:]) }

// SetType sets the format's buffer type.
func (f *Format) SetType(t uint32) { binary.NativeEndian.PutUint32(f[0:], t) }

// U32 reads the u32 at off in the union.
func (f *Format) U32(off uintptr) uint32 { return binary.NativeEndian.Uint32(f[formatUnion+off:]) }

// PutU32 writes the u32 at off in the union.
func (f *Format) PutU32(off uintptr, v uint32) {
	binary.NativeEndian.PutUint32(f[formatUnion+off:], v)
}

// PixFormat is the start of struct v4l2_pix_format (the single-planar union member).
type PixFormat struct {
	Width, Height, PixelFormat, Field, BytesPerLine, SizeImage uint32
}

// Pix reads the union as struct v4l2_pix_format.
func (f *Format) Pix() PixFormat {
	var p PixFormat
	for i, v := range []*uint32{&p.Width, &p.Height, &p.PixelFormat, &p.Field, &p.BytesPerLine, &p.SizeImage} {
		*v = f.U32(uintptr(4 * i))
	}
	return p
}

// Offsets in struct v4l2_pix_format_mplane.
const (
	pixWidth       = 0
	pixHeight      = 4
	pixFormat      = 8
	pixField       = 12
	pixPlanes      = 20 // plane_fmt[8], 20 bytes each: sizeimage, bytesperline, reserved
	pixNumPlanes   = 180
	planeFmtStride = 20
)

// PixMP is the part of struct v4l2_pix_format_mplane this project uses.
type PixMP struct {
	Width, Height, PixelFormat, Field uint32
	NumPlanes                         uint8
	SizeImage, BytesPerLine           [8]uint32
}

// PixMP reads the union as struct v4l2_pix_format_mplane.
func (f *Format) PixMP() PixMP {
	p := PixMP{Width: f.U32(pixWidth), Height: f.U32(pixHeight), PixelFormat: f.U32(pixFormat), Field: f.U32(pixField),
		NumPlanes: f[formatUnion+pixNumPlanes]}
	for i := range 8 {
		p.SizeImage[i] = f.U32(pixPlanes + uintptr(i)*planeFmtStride)
		p.BytesPerLine[i] = f.U32(pixPlanes + uintptr(i)*planeFmtStride + 4)
	}
	return p
}

// SetPixMP writes p into the union as struct v4l2_pix_format_mplane.
func (f *Format) SetPixMP(p PixMP) {
	f.PutU32(pixWidth, p.Width)
	f.PutU32(pixHeight, p.Height)
	f.PutU32(pixFormat, p.PixelFormat)
	f.PutU32(pixField, p.Field)
	f[formatUnion+pixNumPlanes] = p.NumPlanes
	for i := range 8 {
		f.PutU32(pixPlanes+uintptr(i)*planeFmtStride, p.SizeImage[i])
		f.PutU32(pixPlanes+uintptr(i)*planeFmtStride+4, p.BytesPerLine[i])
	}
}
