package m2m

import (
	"encoding/binary"
	"unsafe"
)

// Buffer types, memory, capabilities and flags (videodev2.h).
const (
	bufTypeCaptureMPlane = 9
	bufTypeOutputMPlane  = 10
	memoryMMAP           = 1
	fieldNone            = 1

	capVideoM2MMPlane = 0x00004000
	capStreaming      = 0x04000000
	capDeviceCaps     = 0x80000000

	bufFlagKeyframe = 0x00000008
	bufFlagLast     = 0x00100000
)

// Pixel formats.
var (
	pixFmtH264 = fourcc("H264")
	pixFmtYU12 = fourcc("YU12")
)

func fourcc(s string) uint32 {
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// Controls (v4l2-controls.h; V4L2_CID_CODEC_BASE = 0x00990900).
const (
	cidCodecBase       = 0x00990900
	cidBitrate         = cidCodecBase + 207
	cidRepeatSeqHeader = cidCodecBase + 226
	cidForceKeyFrame   = cidCodecBase + 229
	cidH264IPeriod     = cidCodecBase + 358
	cidH264Level       = cidCodecBase + 359
	cidH264Profile     = cidCodecBase + 363

	profileConstrainedBaseline = 1
	level30                    = 8
	level31                    = 9
	level40                    = 11
	level42                    = 13
)

// capability mirrors struct v4l2_capability.
type capability struct {
	Driver       [16]byte
	Card         [32]byte
	BusInfo      [32]byte
	Version      uint32
	Capabilities uint32
	DeviceCaps   uint32
	Reserved     [3]uint32
}

// requestBuffers mirrors struct v4l2_requestbuffers.
type requestBuffers struct {
	Count        uint32
	Type         uint32
	Memory       uint32
	Capabilities uint32
	Flags        uint8
	Reserved     [3]uint8
}

// plane mirrors struct v4l2_plane: M is the union of mem_offset (u32), userptr (unsigned
// long) and fd (s32), so it is long-sized.
type plane struct {
	BytesUsed  uint32
	Length     uint32
	M          uintptr
	DataOffset uint32
	Reserved   [11]uint32
}

// buffer mirrors struct v4l2_buffer: the timestamp is a struct timeval of two longs and
// M the union whose planes member (the one multi-planar queues use) is a pointer; as an
// unsafe.Pointer the garbage collector sees it too.
type buffer struct {
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

// control mirrors struct v4l2_control.
type control struct {
	ID    uint32
	Value int32
}

// streamParm mirrors struct v4l2_streamparm (no pointers: 204 bytes everywhere); for an
// OUTPUT queue the union starts with struct v4l2_outputparm: capability, outputmode,
// timeperframe{numerator, denominator}.
type streamParm struct {
	Type uint32
	Parm [200]byte
}

// formatSize is sizeof(struct v4l2_format): a u32 and a 200-byte union aligned like a
// pointer.
const formatSize = unsafe.Sizeof(uintptr(0)) + 200

// format is struct v4l2_format as bytes; the pix_mp member of the union is packed.
type format [formatSize]byte

const fmtUnion = unsafe.Sizeof(uintptr(0))

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

func (f *format) typ() uint32            { return binary.NativeEndian.Uint32(f[0:]) }
func (f *format) setType(t uint32)       { binary.NativeEndian.PutUint32(f[0:], t) }
func (f *format) u32(off uintptr) uint32 { return binary.NativeEndian.Uint32(f[fmtUnion+off:]) }
func (f *format) put(off uintptr, v uint32) {
	binary.NativeEndian.PutUint32(f[fmtUnion+off:], v)
}

// pixMP is the part of struct v4l2_pix_format_mplane this package uses.
type pixMP struct {
	Width, Height, PixelFormat, Field uint32
	NumPlanes                         uint8
	SizeImage, BytesPerLine           [8]uint32
}

func (f *format) pix() pixMP {
	p := pixMP{Width: f.u32(pixWidth), Height: f.u32(pixHeight), PixelFormat: f.u32(pixFormat), Field: f.u32(pixField),
		NumPlanes: f[fmtUnion+pixNumPlanes]}
	for i := range 8 {
		p.SizeImage[i] = f.u32(pixPlanes + uintptr(i)*planeFmtStride)
		p.BytesPerLine[i] = f.u32(pixPlanes + uintptr(i)*planeFmtStride + 4)
	}
	return p
}

func (f *format) setPix(p pixMP) {
	f.put(pixWidth, p.Width)
	f.put(pixHeight, p.Height)
	f.put(pixFormat, p.PixelFormat)
	f.put(pixField, p.Field)
	f[fmtUnion+pixNumPlanes] = p.NumPlanes
	for i := range 8 {
		f.put(pixPlanes+uintptr(i)*planeFmtStride, p.SizeImage[i])
		f.put(pixPlanes+uintptr(i)*planeFmtStride+4, p.BytesPerLine[i])
	}
}

// ioctl request numbers (asm-generic/ioctl.h encoding, the same on x86, arm and arm64).
func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | 'V'<<8 | nr }

const (
	iocW  = 1
	iocR  = 2
	iocRW = 3
)

var (
	vidiocQuerycap  = ioc(iocR, 0, unsafe.Sizeof(capability{}))
	vidiocSFmt      = ioc(iocRW, 5, formatSize)
	vidiocReqbufs   = ioc(iocRW, 8, unsafe.Sizeof(requestBuffers{}))
	vidiocQuerybuf  = ioc(iocRW, 9, unsafe.Sizeof(buffer{}))
	vidiocQbuf      = ioc(iocRW, 15, unsafe.Sizeof(buffer{}))
	vidiocDqbuf     = ioc(iocRW, 17, unsafe.Sizeof(buffer{}))
	vidiocStreamon  = ioc(iocW, 18, 4)
	vidiocStreamoff = ioc(iocW, 19, 4)
	vidiocSParm     = ioc(iocRW, 22, unsafe.Sizeof(streamParm{}))
	vidiocSCtrl     = ioc(iocRW, 28, unsafe.Sizeof(control{}))
)

// ioctlName names a request for errors and fakes.
func ioctlName(req uintptr) string {
	switch req {
	case vidiocQuerycap:
		return "VIDIOC_QUERYCAP"
	case vidiocSFmt:
		return "VIDIOC_S_FMT"
	case vidiocReqbufs:
		return "VIDIOC_REQBUFS"
	case vidiocQuerybuf:
		return "VIDIOC_QUERYBUF"
	case vidiocQbuf:
		return "VIDIOC_QBUF"
	case vidiocDqbuf:
		return "VIDIOC_DQBUF"
	case vidiocStreamon:
		return "VIDIOC_STREAMON"
	case vidiocStreamoff:
		return "VIDIOC_STREAMOFF"
	case vidiocSParm:
		return "VIDIOC_S_PARM"
	case vidiocSCtrl:
		return "VIDIOC_S_CTRL"
	}
	return "ioctl?"
}
