package opus

import (
	"fmt"
	"math"
	"testing"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
)

// encodeTone encodes seconds of a sine through enc and returns the packets.
func encodeTone(t testing.TB, enc *Encoder, freq, amp float64, frames int) [][]byte {
	t.Helper()
	pcm := make([]int16, device.FrameSamples)
	var packets [][]byte
	phase := 0.0
	for i := 0; i < frames; i++ {
		phase = audio.Sine(pcm, device.SampleRate, freq, amp, phase)
		buf := make([]byte, MaxPacketSize)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		packets = append(packets, buf[:n])
	}
	return packets
}

func TestToneSurvivesRoundTrip(t *testing.T) {
	for _, tc := range []struct{ freq, amp float64 }{{440, 0.3}, {1000, 0.5}, {200, 0.1}, {3000, 0.3}} {
		enc, err := NewEncoder()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := NewDecoder()
		if err != nil {
			t.Fatal(err)
		}
		packets := encodeTone(t, enc, tc.freq, tc.amp, 50) // 1 s
		var out []int16
		bytes := 0
		pcm := make([]int16, MaxFrameSamples)
		for _, p := range packets {
			bytes += len(p)
			n, err := dec.Decode(p, pcm)
			if err != nil {
				t.Fatal(err)
			}
			if n != device.FrameSamples {
				t.Fatalf("decoded %d samples, want %d", n, device.FrameSamples)
			}
			out = append(out, pcm[:n]...)
		}
		steady := out[device.SampleRate/5:] // skip the encoder's start-up
		f := audio.DominantFrequency(steady, device.SampleRate)
		wantRMS := tc.amp * 32767 / math.Sqrt2
		levelDB := 20 * math.Log10(audio.RMS(steady)/wantRMS)
		tonal := audio.Goertzel(steady, device.SampleRate, tc.freq) / math.Pow(audio.RMS(steady), 2)
		kbps := float64(bytes) * 8 / 1000
		t.Logf("%4.0f Hz amp %.1f: got %.2f Hz, level %+.2f dB, %.1f%% of power in the tone, %.1f kbit/s",
			tc.freq, tc.amp, f, levelDB, 100*tonal, kbps)
		if math.Abs(f-tc.freq) > 5 {
			t.Errorf("%v Hz: decoded frequency %.2f", tc.freq, f)
		}
		if math.Abs(levelDB) > 1 {
			t.Errorf("%v Hz: level off by %.2f dB", tc.freq, levelDB)
		}
		if tonal < 0.9 {
			t.Errorf("%v Hz: only %.1f%% of the power is the tone", tc.freq, 100*tonal)
		}
		if kbps < 8 || kbps > 48 {
			t.Errorf("%v Hz: %.1f kbit/s, want about %d", tc.freq, kbps, DefaultBitrate/1000)
		}
	}
}

func TestDecodeLost(t *testing.T) {
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, device.FrameSamples)
	for i := range pcm {
		pcm[i] = 99
	}
	// Nothing decoded yet: silence.
	if n, err := dec.DecodeLost(pcm); err != nil || n != device.FrameSamples || audio.RMS(pcm) != 0 {
		t.Fatalf("first lost frame: n=%d err=%v rms=%.1f", n, err, audio.RMS(pcm))
	}
	enc, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range encodeTone(t, enc, 440, 0.3, 25) {
		if _, err := dec.Decode(p, pcm); err != nil {
			t.Fatal(err)
		}
	}
	// A lost frame after a tone conceals with something tone-like; an empty packet
	// means the same.
	for _, lost := range []func([]int16) (int, error){dec.DecodeLost, func(p []int16) (int, error) { return dec.Decode(nil, p) }} {
		n, err := lost(pcm)
		if err != nil || n != device.FrameSamples {
			t.Fatalf("concealment: n=%d err=%v", n, err)
		}
		if audio.RMS(pcm) == 0 {
			t.Fatal("concealment is silence right after a tone")
		}
		t.Logf("concealed frame: %.0f Hz, %.1f dBFS", audio.DominantFrequency(pcm, device.SampleRate), audio.DBFS(pcm))
	}
}

func TestDecodeFEC(t *testing.T) {
	enc, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetPacketLoss(20); err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	packets := encodeTone(t, enc, 300, 0.3, 30)
	pcm := make([]int16, device.FrameSamples)
	for _, p := range packets[:20] {
		if _, err := dec.Decode(p, pcm); err != nil {
			t.Fatal(err)
		}
	}
	// Packet 20 is lost; recover it from 21.
	n, err := dec.DecodeFEC(packets[21], pcm)
	if err != nil || n != device.FrameSamples {
		t.Fatalf("DecodeFEC: n=%d err=%v", n, err)
	}
	if audio.RMS(pcm) == 0 {
		t.Fatal("FEC recovery is silence")
	}
	t.Logf("recovered frame: %.0f Hz, %.1f dBFS", audio.DominantFrequency(pcm, device.SampleRate), audio.DBFS(pcm))
	if _, err := dec.Decode(packets[21], pcm); err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	enc, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Encode(make([]int16, 100), make([]byte, MaxPacketSize)); err == nil {
		t.Error("short frame accepted")
	}
	if err := enc.SetBitrate(1); err == nil {
		t.Error("bitrate 1 accepted")
	}
	if _, err := NewEncoder(WithComplexity(11)); err == nil {
		t.Error("complexity 11 accepted")
	}
	if _, err := NewEncoder(WithBitrate(64000), WithComplexity(10)); err != nil {
		t.Error(err)
	}
	dec, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, device.FrameSamples)
	// 0xFF is a code-3 packet with no frame count byte: malformed.
	for _, p := range [][]byte{{0xff}, {0x03}, {0x02}, {0x01, 0x05}} {
		if _, err := dec.Decode(p, pcm); err == nil {
			t.Errorf("malformed packet %x accepted", p)
		}
	}
	// A 60 ms packet does not fit a 20 ms buffer.
	enc60, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	if err := enc60.enc.SetFrameSize(3 * device.FrameSamples); err != nil {
		t.Fatal(err)
	}
	long := make([]int16, 3*device.FrameSamples)
	audio.Sine(long, device.SampleRate, 440, 0.3, 0)
	buf := make([]byte, MaxPacketSize)
	n, err := enc60.enc.EncodeInt16(long, buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Decode(buf[:n], pcm); err == nil {
		t.Error("60 ms packet decoded into a 20 ms buffer")
	}
	big := make([]int16, MaxFrameSamples)
	if got, err := dec.Decode(buf[:n], big); err != nil || got != 3*device.FrameSamples {
		t.Errorf("60 ms packet: n=%d err=%v", got, err)
	}
}

func FuzzDecode(f *testing.F) {
	enc, err := NewEncoder()
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range encodeTone(f, enc, 440, 0.3, 3) {
		f.Add(p)
	}
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, packet []byte) {
		dec, err := NewDecoder()
		if err != nil {
			t.Fatal(err)
		}
		pcm := make([]int16, MaxFrameSamples)
		n, err := dec.Decode(packet, pcm)
		if err == nil && (n < 0 || n > MaxFrameSamples) {
			t.Fatalf("n = %d", n)
		}
	})
}

// speechLike returns n samples of a voiced-speech-like signal (20 harmonics of a
// gliding 80–160 Hz pitch, syllable-rate envelope, some noise): codec cost on a pure
// tone is not representative.
func speechLike(n int) []int16 {
	out := make([]int16, n)
	phase := 0.0
	seed := uint32(7)
	for i := range out {
		t := float64(i) / device.SampleRate
		phase += (120 + 40*math.Sin(2*math.Pi*0.7*t)) / device.SampleRate
		env := 0.5 + 0.5*math.Sin(2*math.Pi*3*t)
		v := 0.0
		for h := 1.0; h <= 20; h++ {
			v += math.Sin(2*math.Pi*phase*h) / h
		}
		seed = seed*1664525 + 1013904223
		noise := float64(int32(seed>>16)-32768) / 32768
		out[i] = int16(6000 * (env*v + 0.1*noise))
	}
	return out
}

func BenchmarkEncode(b *testing.B) {
	sig := speechLike(2 * device.SampleRate)
	frames := len(sig) / device.FrameSamples
	for _, c := range []int{0, DefaultComplexity, 10} {
		b.Run(fmt.Sprint("complexity=", c), func(b *testing.B) {
			enc, err := NewEncoder(WithComplexity(c))
			if err != nil {
				b.Fatal(err)
			}
			out := make([]byte, MaxPacketSize)
			i := 0
			for b.Loop() {
				f := i % frames
				if _, err := enc.Encode(sig[f*device.FrameSamples:(f+1)*device.FrameSamples], out); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/frame")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	enc, err := NewEncoder()
	if err != nil {
		b.Fatal(err)
	}
	sig := speechLike(2 * device.SampleRate)
	var packets [][]byte
	for f := 0; f < len(sig)/device.FrameSamples; f++ {
		buf := make([]byte, MaxPacketSize)
		n, err := enc.Encode(sig[f*device.FrameSamples:(f+1)*device.FrameSamples], buf)
		if err != nil {
			b.Fatal(err)
		}
		packets = append(packets, buf[:n])
	}
	dec, err := NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	pcm := make([]int16, device.FrameSamples)
	i := 0
	for b.Loop() {
		if _, err := dec.Decode(packets[i%len(packets)], pcm); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/frame")
}
