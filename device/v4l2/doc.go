// Package v4l2 finds V4L2 cameras, lists what they can do, and reads them as a
// device.VideoSource, in pure Go (github.com/blackjack/webcam for capture, plain
// ioctls of device/v4l2abi for the few queries it lacks).
//
// # Contract
//
//   - List returns the capture devices (single-planar video capture with streaming I/O;
//     memory-to-memory codecs such as the Pi's /dev/video10–31 and metadata nodes are
//     left out), each with its /dev/v4l/by-id name when udev made one, and every pixel
//     format with its frame sizes and frame intervals.
//   - Open picks a format, size and rate (Choose: from Options, else automatically),
//     and yields H.264 access units: a camera that sends H.264 is passed through (one
//     access unit per buffer, SPS/PPS put in front of every IDR, ParamSets in
//     device/encode); YUYV, NV12, YU12/YV12 and MJPEG pictures are converted to I420 and
//     encoded by an encode.Encoder (by default the pure-Go one).
//   - RequestKeyframe makes the next access unit an IDR: the encoder's next picture, or
//     for passthrough the V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME control when the camera has
//     it (UVC cameras mostly do not; they send IDRs on their own period).
//   - The camera paces the stream. ReadSample fails when no picture comes for
//     Options.StallTimeout or the device goes away (ENODEV: unplugged); Resilient
//     wraps a source to reopen it with back-off.
//
// Kernel interface: include/uapi/linux/videodev2.h and v4l2-controls.h.
package v4l2
