package agent

import (
	"testing"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/opus"
	"github.com/pion/webrtc/v4"
)

// A packet of RTP padding only (no payload) decodes to no audio (before, Opus concealed it as a
// lost packet of 120 ms (the whole buffer), which Firefox's padding at the start and end of a
// stream pushed into the mixer); Opus, and only Opus, conceals a frame once it has decoded one.
func TestAudioDecoder(t *testing.T) {
	for _, mime := range []string{webrtc.MimeTypeOpus, webrtc.MimeTypePCMU, webrtc.MimeTypePCMA} {
		decode, conceal, err := audioDecoder(mime)
		if err != nil {
			t.Fatalf("%s: %v", mime, err)
		}
		pcm := make([]int16, 0, 5760)
		if mime == webrtc.MimeTypeOpus {
			// A real packet first, so that the decoder would have something to conceal.
			enc, err := opus.NewEncoder()
			if err != nil {
				t.Fatal(err)
			}
			frame := make([]int16, device.FrameSamples)
			audio.Sine(frame, device.SampleRate, 700, 0.5, 0)
			buf := make([]byte, 1500)
			n, err := enc.Encode(frame, buf)
			if err != nil {
				t.Fatal(err)
			}
			frame = make([]int16, device.FrameSamples)
			if conceal(frame) {
				t.Fatal("opus: concealment before any packet")
			}
			if out, err := decode(buf[:n], pcm[:0]); err != nil || len(out) != device.FrameSamples {
				t.Fatalf("opus: a 20 ms packet decoded to %d samples (%v)", len(out), err)
			}
			if !conceal(frame) || audio.RMS(frame) < 300 {
				t.Fatalf("opus: the frame after a 700 Hz one concealed to RMS %.0f", audio.RMS(frame))
			}
		} else if conceal != nil {
			t.Errorf("%s: a concealer, want none", mime)
		}
		out, err := decode(nil, pcm[:0])
		if err != nil || len(out) != 0 {
			t.Errorf("%s: an empty payload decoded to %d samples (%v), want none", mime, len(out), err)
		}
	}
}

func TestReceivedAudioCounts(t *testing.T) {
	var r receivedAudio
	// 65534, 65535, 0 (wraps), 3 (misses 1, 2), 2 (late: no gap), 4, 7 (misses 5, 6); 4 is empty.
	for _, p := range []struct {
		seq     uint16
		payload int
	}{{65534, 100}, {65535, 100}, {0, 100}, {3, 100}, {2, 100}, {4, 0}, {7, 100}} {
		r.packet(p.seq, p.payload)
	}
	if r.packets != 7 || r.empty != 1 || r.gaps != 2 || r.lost != 4 {
		t.Errorf("counted %+v, want 7 packets, 1 empty, 2 gaps, 4 lost", r)
	}
}
