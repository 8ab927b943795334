package m2m

import "github.com/camagent/camagent/device/v4l2abi"

// The V4L2 ABI is defined in device/v4l2abi; these are the short names this package uses.

type (
	capability     = v4l2abi.Capability
	requestBuffers = v4l2abi.RequestBuffers
	plane          = v4l2abi.Plane
	buffer         = v4l2abi.Buffer
	control        = v4l2abi.Control
	streamParm     = v4l2abi.StreamParm
	format         = v4l2abi.Format
	pixMP          = v4l2abi.PixMP
)

const (
	bufTypeCaptureMPlane = v4l2abi.BufTypeCaptureMPlane
	bufTypeOutputMPlane  = v4l2abi.BufTypeOutputMPlane
	memoryMMAP           = v4l2abi.MemoryMMAP
	fieldNone            = v4l2abi.FieldNone

	capVideoM2MMPlane = v4l2abi.CapVideoM2MMPlane
	capStreaming      = v4l2abi.CapStreaming
	capDeviceCaps     = v4l2abi.CapDeviceCaps

	bufFlagKeyframe = v4l2abi.BufFlagKeyframe
	bufFlagLast     = v4l2abi.BufFlagLast

	cidBitrate         = v4l2abi.CIDBitrate
	cidRepeatSeqHeader = v4l2abi.CIDRepeatSeqHeader
	cidForceKeyFrame   = v4l2abi.CIDForceKeyFrame
	cidH264IPeriod     = v4l2abi.CIDH264IPeriod
	cidH264Level       = v4l2abi.CIDH264Level
	cidH264Profile     = v4l2abi.CIDH264Profile

	profileConstrainedBaseline = v4l2abi.H264ProfileConstrainedBaseline
	level30                    = v4l2abi.H264Level30
	level31                    = v4l2abi.H264Level31
	level40                    = v4l2abi.H264Level40
	level42                    = v4l2abi.H264Level42
)

var (
	pixFmtH264 = v4l2abi.PixFmtH264
	pixFmtYU12 = v4l2abi.PixFmtYU12

	vidiocQuerycap  = v4l2abi.VidiocQuerycap
	vidiocSFmt      = v4l2abi.VidiocSFmt
	vidiocReqbufs   = v4l2abi.VidiocReqbufs
	vidiocQuerybuf  = v4l2abi.VidiocQuerybuf
	vidiocQbuf      = v4l2abi.VidiocQbuf
	vidiocDqbuf     = v4l2abi.VidiocDqbuf
	vidiocStreamon  = v4l2abi.VidiocStreamon
	vidiocStreamoff = v4l2abi.VidiocStreamoff
	vidiocSParm     = v4l2abi.VidiocSParm
	vidiocSCtrl     = v4l2abi.VidiocSCtrl

	ioctlName = v4l2abi.RequestName
)
