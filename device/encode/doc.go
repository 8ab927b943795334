// Package encode turns raw camera pictures into H.264 access units for a
// device.VideoSource, and repairs H.264 streams that come already encoded.
//
// # Contract
//
//   - An Encoder takes I420 pictures (h264.Frame) of one size and returns one Annex-B
//     access unit per picture; an IDR access unit starts with SPS and PPS. Software is
//     the pure-Go encoder every build has (device/h264: lossless, so its bit rate is
//     high — fine on a LAN and for tests, wrong for a mobile uplink).
//   - Convert* functions turn a camera buffer (YUYV, NV12, YU12, YV12, MJPEG) into an
//     I420 frame, averaging chroma rows where the source has more chroma than 4:2:0.
//   - A ParamSets filter makes a passed-through stream usable by WebRTC: SPS and PPS in
//     front of every IDR (cached from wherever the camera sent them), nothing before the
//     first IDR.
//
// Encoders are used by one goroutine at a time.
package encode
