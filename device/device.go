// Package device defines the narrow interfaces between the agent and its media hardware:
// a VideoSource that yields encoded access units, a Microphone that yields PCM, and a
// Speaker that consumes PCM. Concrete sources and sinks live in sub-packages (synth, wav,
// alsa, …); Open* in spec.go turn a command-line SPEC into one of them.
//
// Ownership: whoever opens a source or sink closes it. Read/Write calls are made from one
// goroutine at a time; RequestKeyframe and Close may be called from any goroutine.
package device

import (
	"context"
	"errors"
	"image"
	"time"
)

// Audio format used everywhere inside the agent: 48 kHz, mono, signed 16-bit, 20 ms frames.
const (
	SampleRate    = 48000
	Channels      = 1
	FrameDuration = 20 * time.Millisecond
	FrameSamples  = SampleRate / 50 // samples per 20 ms frame
)

// Sample is one encoded unit of media.
type Sample struct {
	// Data is, for video, one H.264 access unit in Annex-B form (start codes included).
	Data []byte
	// Duration is how long the unit lasts (1/fps for video).
	Duration time.Duration
	// Keyframe is true for an IDR access unit (with SPS and PPS in front of it).
	Keyframe bool
	// CaptureTime is when the frame was captured (wall clock).
	CaptureTime time.Time
}

// VideoSource yields encoded video access units, paced in real time.
type VideoSource interface {
	// MimeType is the RTP codec, e.g. "video/H264".
	MimeType() string
	// ReadSample blocks until the next access unit, or ctx ends, or the source fails.
	ReadSample(ctx context.Context) (Sample, error)
	// RequestKeyframe makes the next access unit an IDR (answers a PLI/FIR or a new viewer).
	RequestKeyframe()
	Close() error
}

// Microphone yields PCM audio, paced in real time.
type Microphone interface {
	// ReadFrame fills pcm (FrameSamples mono samples at SampleRate) with the next 20 ms.
	ReadFrame(ctx context.Context, pcm []int16) error
	Close() error
}

// Speaker consumes PCM audio (mono, SampleRate).
type Speaker interface {
	// WriteFrame plays one frame of FrameSamples samples. It must not block for long:
	// a speaker keeps a bounded buffer and drops or conceals instead.
	WriteFrame(pcm []int16) error
	Close() error
}

// Picture is one still picture from a camera, for a snapshot.
type Picture struct {
	// Image is the decoded picture (an *image.YCbCr from the raw paths).
	Image image.Image
	// JPEG, when set, is the camera's own JPEG of the same picture (MJPEG cameras): it is
	// used as it is when it fits, instead of encoding Image again.
	JPEG []byte
	// CaptureTime is when the picture was captured (wall clock).
	CaptureTime time.Time
}

// StillSource is a VideoSource that keeps the last picture it delivered, so a snapshot
// costs no extra capture: during a call it is the picture viewers saw last.
type StillSource interface {
	// LatestPicture returns a copy of the picture of the last access unit ReadSample
	// returned; ErrNoPicture before the first, ErrNoStill when the source has no decoded
	// pictures (a camera that sends H.264 itself).
	LatestPicture() (Picture, error)
}

// Errors of LatestPicture.
var (
	ErrNoPicture = errors.New("no picture captured yet")
	ErrNoStill   = errors.New("the camera sends only H.264, which this build does not decode: configure a raw or MJPEG pixel format for snapshots")
)
