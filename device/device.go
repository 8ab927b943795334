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
