package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/g711"
	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// TestCallG711: a device set to G.711 (audioCodec pcmu) talks μ-law, and plays a user who
// talks A-law: both tones arrive at the right frequency.
func TestCallG711(t *testing.T) {
	s := startSystemWith(t, func(c *agent.Config) { c.AudioCodec = "pcmu" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const channel = "g711"
	c, _ := s.joinClient(ctx, channel, 77)

	// The user talks A-law at 1000 Hz.
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000, Channels: 1}, "audio", "pcma")
	must(t, err, "track")
	tone := audio.NewTone(1000, 0.3)
	go func() {
		pcm := make([]int16, device.FrameSamples)
		for tone.ReadFrame(ctx, pcm) == nil {
			track.WriteSample(media.Sample{Data: g711.Encode(g711.Alaw, pcm, nil), Duration: device.FrameDuration})
		}
	}()
	_, err = c.Publish(ctx, track)
	must(t, err, "publish A-law")

	dev := s.deviceInChannel(channel)
	remote, err := c.Subscribe(ctx, dev, rtc.KindAudio)
	must(t, err, "subscribe")
	if mime := remote.Codec().MimeType; !strings.EqualFold(mime, webrtc.MimeTypePCMU) {
		t.Fatalf("device audio arrives as %s, want PCMU", mime)
	}
	d := g711.NewDecoder(g711.Ulaw)
	var pcm []int16
	for len(pcm) < device.SampleRate {
		remote.SetReadDeadline(time.Now().Add(5 * time.Second))
		pkt, _, err := remote.ReadRTP()
		must(t, err, "read device audio")
		pcm = d.Decode(pkt.Payload, pcm)
	}
	tail := pcm[len(pcm)-device.SampleRate/2:]
	if f := audio.DominantFrequency(tail, device.SampleRate); f < 435 || f > 445 {
		t.Errorf("device's μ-law tone heard at %.1f Hz, want 440", f)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		samples, _, _, err := wav.ReadFile(s.speaker)
		if err == nil && len(samples) > device.SampleRate {
			w := samples[len(samples)-device.SampleRate/2:]
			if f := audio.DominantFrequency(w, device.SampleRate); f > 995 && f < 1005 && audio.RMS(w) > 1000 {
				t.Logf("device speaker plays the A-law talker at %.1f Hz, %.1f dBFS", f, audio.DBFS(w))
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device's speaker never played the A-law tone (%d samples, %v)", len(samples), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
