package agent

import (
	"fmt"
	"strings"
	"sync"

	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/g711"
	"github.com/camagent/camagent/device/opus"
	"github.com/pion/webrtc/v4"
)

// AudioCodecs are the values Config.AudioCodec accepts.
var AudioCodecs = []string{"opus", "pcmu", "pcma"}

// audioCapability is the RTP codec of the agent's microphone track.
func audioCapability(codec string) webrtc.RTPCodecCapability {
	switch codec {
	case "pcmu":
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}
	case "pcma":
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000, Channels: 1}
	}
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
}

// audioEncoder returns a function that encodes one 20 ms frame of 48 kHz PCM, appending the
// payload to out.
func audioEncoder(codec string) (func(pcm []int16, out []byte) ([]byte, error), error) {
	switch codec {
	case "pcmu", "pcma":
		law := g711.Ulaw
		if codec == "pcma" {
			law = g711.Alaw
		}
		return func(pcm []int16, out []byte) ([]byte, error) { return g711.Encode(law, pcm, out), nil }, nil
	}
	enc, err := opus.NewEncoder()
	if err != nil {
		return nil, err
	}
	return func(pcm []int16, out []byte) ([]byte, error) {
		n, err := enc.Encode(pcm, out[:cap(out)])
		return out[:n], err
	}, nil
}

// audioDecoder returns a function that decodes one RTP payload of a remote track with the
// given MIME type into 48 kHz PCM appended to pcm, and for Opus a concealer for the mixer
// (the decoder's packet loss concealment of a frame that did not arrive in time; nil for
// G.711). The two may be called from different goroutines. An empty payload (a packet of
// RTP padding only, as Firefox sends when a stream starts and ends) holds no audio and
// decodes to nothing: it is not a lost packet to conceal.
func audioDecoder(mime string) (func(payload []byte, pcm []int16) ([]int16, error), audio.Concealer, error) {
	if law, err := g711.ForMimeType(mime); err == nil {
		d := g711.NewDecoder(law)
		return func(p []byte, pcm []int16) ([]int16, error) { return d.Decode(p, pcm), nil }, nil, nil
	}
	if !strings.EqualFold(mime, webrtc.MimeTypeOpus) {
		return nil, nil, fmt.Errorf("cannot play %s audio", mime)
	}
	dec, err := opus.NewDecoder()
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex // the decoder's state is shared by decode and conceal
	decode := func(p []byte, pcm []int16) ([]int16, error) {
		if len(p) == 0 {
			return pcm, nil
		}
		mu.Lock()
		defer mu.Unlock()
		n, err := dec.Decode(p, pcm[:cap(pcm)])
		return pcm[:n], err
	}
	conceal := func(pcm []int16) bool {
		mu.Lock()
		defer mu.Unlock()
		if !dec.Decoded() {
			return false
		}
		n, err := dec.DecodeLost(pcm)
		return err == nil && n == len(pcm)
	}
	return decode, conceal, nil
}
