// Package h264 is a tiny, pure-Go, lossless H.264 encoder for synthetic pictures, plus
// the Annex-B helpers its users need (SplitAnnexB, IsKeyframe, ParseFrameInfo).
//
// # Contract
//
// An Encoder turns I420 Frames of one size into Constrained Baseline access units
// (Annex-B, 4-byte start codes) that any conforming decoder – ffmpeg, and so Chromium –
// decodes to exactly the input pixels. An IDR access unit is SPS, PPS, SEI, slice; any
// other is SEI, slice. The SEI is a user_data_unregistered message with FrameInfoUUID,
// the frame counter and the capture time. Frames whose size is not a multiple of 16 are
// padded by edge replication and cropped in the SPS. The level is the lowest that admits
// the frame size and rate; ProfileLevelID gives it for SDP. An Encoder is used by one
// goroutine at a time.
//
// # Design
//
// The agent needs a video source with no camera and no cgo that still sends real H.264
// over WebRTC. A looped clip cannot make an IDR on demand, cannot say which frame a
// viewer is seeing, and cannot be checked pixel for pixel. This encoder does all three by
// using only the coding tools that reconstruct exactly:
//
//   - I_PCM macroblocks carry raw samples;
//   - Intra 16x16 DC prediction plus a single luma DC coefficient codes a flat
//     macroblock whose chroma the prediction already equals (the mid-gray background,
//     the black and white strips) in one to four bytes: at QP 28 a DC level of L adds
//     exactly L to every luma sample;
//   - P_Skip copies an unchanged macroblock: every macroblock is intra or a skip with a
//     zero motion vector, so the predicted vector (8.4.1.1) is always zero;
//   - deblocking is disabled.
//
// Each picture is one slice. Reconstruction is exact, so the encoder's previous input is
// the decoder's reference picture and a macroblock equal to it can be skipped. The cost
// is bit rate on changed macroblocks (384 bytes each), which is fine for a test picture
// that changes in a few places per frame, and wrong for camera content.
//
// References are to ITU-T H.264 (08/2021).
package h264
