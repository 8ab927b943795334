// Package m2m drives a V4L2 memory-to-memory H.264 encoder — the Raspberry Pi's
// bcm2835-codec at /dev/video11 on Pi Zero 2 W, 3 and 4 — in pure Go, as an
// encode.Encoder.
//
// # Contract
//
// Open configures the encoder for I420 pictures of one size: CAPTURE format H.264 first,
// then OUTPUT format YU12, the frame rate, and the controls bitrate, I-frame period,
// profile (constrained baseline), level and REPEAT_SEQ_HEADER (SPS and PPS before every
// IDR, which WebRTC needs); controls the driver refuses are logged and skipped. Encode
// copies a picture into an OUTPUT buffer (honouring the driver's stride and plane
// alignment), queues it, and returns the next access unit from the CAPTURE queue. A
// forced IDR sets V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME before the picture is queued. The
// output passes through encode.ParamSets, so even a driver that sends SPS/PPS once, in a
// buffer of their own, yields IDRs with SPS/PPS in front.
//
// Both queues are multi-planar with MMAP buffers; the picture is one plane. All kernel
// calls go through the Device interface, so tests run the exact ioctl sequence against
// a fake (m2m_test.go); the real one is Linux ioctl/mmap/poll on the device node.
//
// # 32-bit ARM
//
// struct v4l2_buffer and struct v4l2_plane hold longs and pointers (struct timeval, the
// m unions), and struct v4l2_format's union is pointer-aligned: their sizes, and so the
// ioctl numbers that encode them, differ between 32- and 64-bit systems. The Go structs
// (device/v4l2abi) use uintptr for every long and pointer, which reproduces both layouts
// (88/64/208 bytes on 64-bit, 68/60/204 on 32-bit; v4l2abi's layout test checks them, and
// `make test-abi32` runs it as 386 and as arm under qemu-user). Pi OS's 32-bit
// userland uses the 32-bit time_t layout, which the kernel still serves.
//
// Kernel interface: include/uapi/linux/videodev2.h, v4l2-controls.h and
// Documentation/userspace-api/media/v4l/dev-encoder.rst.
package m2m
