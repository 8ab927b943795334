// Package rtctest holds stand-ins for the people in a channel, for tests, benchmarks and the
// VM and NAT probes: today, someone talking to the device.
package rtctest

import (
	"context"
	"fmt"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/opus"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// PublishTone publishes a paced Opus tone of freq Hz from c until ctx ends: a person talking.
// The tone flows before Publish is called (the hub announces a track when its media arrives),
// and the sender's RTCP is drained. It returns the audio sender.
func PublishTone(ctx context.Context, c *rtc.Client, freq float64) (*webrtc.RTPSender, error) {
	track, err := ToneTrack(ctx, freq, "talker")
	if err != nil {
		return nil, err
	}
	senders, err := c.Publish(ctx, track)
	if err != nil {
		return nil, fmt.Errorf("publish tone: %w", err)
	}
	go peer.DrainRTCP(senders[0], peer.Feedback{})
	return senders[0], nil
}

// ToneTrack is a paced Opus tone of freq Hz (stream names its media stream) until ctx ends.
func ToneTrack(ctx context.Context, freq float64, stream string) (*webrtc.TrackLocalStaticSample, error) {
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, "audio", stream)
	if err != nil {
		return nil, fmt.Errorf("tone track: %w", err)
	}
	enc, err := opus.NewEncoder()
	if err != nil {
		return nil, err
	}
	tone := audio.NewTone(freq, 0.3)
	go func() {
		pcm := make([]int16, device.FrameSamples)
		buf := make([]byte, 1500)
		for tone.ReadFrame(ctx, pcm) == nil {
			if n, err := enc.Encode(pcm, buf); err == nil {
				track.WriteSample(media.Sample{Data: buf[:n], Duration: device.FrameDuration})
			}
		}
	}()
	return track, nil
}
