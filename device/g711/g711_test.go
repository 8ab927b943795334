package g711

import (
	"math"
	"testing"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
)

func TestRoundTrip(t *testing.T) {
	for _, law := range []Law{Ulaw, Alaw} {
		for _, freq := range []float64{300, 440, 1000, 3000} {
			in := make([]int16, device.SampleRate)
			audio.Sine(in, device.SampleRate, freq, 0.3, 0)
			var out []int16
			d := NewDecoder(law)
			for i := 0; i < len(in); i += device.FrameSamples {
				b := Encode(law, in[i:i+device.FrameSamples], nil)
				if len(b) != FrameBytes {
					t.Fatalf("frame of %d bytes, want %d", len(b), FrameBytes)
				}
				out = d.Decode(b, out)
			}
			if len(out) != len(in) {
				t.Fatalf("decoded %d samples, want %d", len(out), len(in))
			}
			f := audio.DominantFrequency(out[4800:], device.SampleRate)
			lossDB := audio.DBFS(out[4800:]) - audio.DBFS(in[4800:])
			// The simple filters cost the top of the telephone band some level (about 5.5 dB
			// at 3 kHz); speech's body, below 1 kHz, is kept within 1.5 dB.
			maxLoss := 1.5
			if freq > 2000 {
				maxLoss = 7
			}
			if math.Abs(f-freq) > 5 || math.Abs(lossDB) > maxLoss {
				t.Errorf("law %d, %.0f Hz: came back at %.1f Hz, %+.2f dB", law, freq, f, lossDB)
			}
		}
	}
}

func TestForMimeType(t *testing.T) {
	if l, err := ForMimeType("audio/PCMU"); err != nil || l != Ulaw {
		t.Error("PCMU")
	}
	if l, err := ForMimeType("audio/pcma"); err != nil || l != Alaw {
		t.Error("PCMA")
	}
	if _, err := ForMimeType("audio/opus"); err == nil {
		t.Error("opus accepted")
	}
}
