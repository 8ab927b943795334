package wav

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
)

func frame(freq, phase float64) ([]int16, float64) {
	pcm := make([]int16, device.FrameSamples)
	phase = audio.Sine(pcm, device.SampleRate, freq, 0.5, phase)
	return pcm, phase
}

func TestWriterRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.wav")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if w.Path() != path {
		t.Fatalf("Path() = %q", w.Path())
	}
	var want []int16
	phase := 0.0
	for i := 0; i < 30; i++ {
		var pcm []int16
		pcm, phase = frame(1000, phase)
		want = append(want, pcm...)
		if err := w.WriteFrame(pcm); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.WriteFrame(want[:10]); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	got, rate, channels, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rate != device.SampleRate || channels != 1 || len(got) != len(want) {
		t.Fatalf("rate %d channels %d samples %d (want %d)", rate, channels, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sample %d: %d, want %d", i, got[i], want[i])
		}
	}
	st, _ := os.Stat(path)
	if st.Size() != 44+int64(2*len(want)) {
		t.Fatalf("file is %d bytes", st.Size())
	}
}

func headerSizes(t *testing.T, path string) (riff, data uint32, fileSize int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 44 {
		t.Fatalf("file of %d bytes", len(b))
	}
	return binary.LittleEndian.Uint32(b[4:8]), binary.LittleEndian.Uint32(b[40:44]), int64(len(b))
}

func TestWriterHeaderValidWhileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live.wav")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, data, _ := headerSizes(t, path); data != 0 {
		t.Fatalf("fresh file claims %d data bytes", data)
	}
	phase := 0.0
	for i := 0; i < 130; i++ { // 2.6 s
		var pcm []int16
		pcm, phase = frame(440, phase)
		if err := w.WriteFrame(pcm); err != nil {
			t.Fatal(err)
		}
	}
	// Patched after each whole second: 2 s claimed, 2.6 s on disk.
	riff, data, size := headerSizes(t, path)
	if data != 2*device.SampleRate*2 || riff != data+36 {
		t.Fatalf("while open: RIFF %d, data %d bytes; want data %d", riff, data, 2*device.SampleRate*2)
	}
	if size < 44+int64(data) {
		t.Fatalf("header claims %d bytes, file has %d", data, size-44)
	}
	// A reader sees a valid file while it is being written.
	got, _, _, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*device.SampleRate {
		t.Fatalf("read %d samples while open", len(got))
	}
	if f := audio.DominantFrequency(got[:device.SampleRate/2], device.SampleRate); math.Abs(f-440) > 1 {
		t.Fatalf("frequency %.1f", f)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, data, _ := headerSizes(t, path); data != 130*device.FrameSamples*2 {
		t.Fatalf("after Sync: data %d", data)
	}
	if w.Samples() != 130*device.FrameSamples {
		t.Fatalf("Samples() = %d", w.Samples())
	}
}

func TestWriterConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.wav")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pcm := make([]int16, device.FrameSamples)
			for i := 0; i < 50; i++ {
				if err := w.WriteFrame(pcm); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	w.Close()
	got, _, _, err := ReadFile(path)
	if err != nil || len(got) != 200*device.FrameSamples {
		t.Fatalf("%d samples, %v", len(got), err)
	}
}

func TestCreateFails(t *testing.T) {
	if _, err := Create(filepath.Join(t.TempDir(), "no", "such", "dir.wav")); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

// build returns a WAV file with the given fmt fields and data bytes.
func build(format, channels, rate, bits int, data []byte) []byte {
	var b bytes.Buffer
	align := channels * bits / 8
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(4+8+16+8+len(data)+8+4))
	b.WriteString("WAVE")
	// An unknown chunk before fmt, with odd size (padded), must be skipped.
	b.WriteString("junk")
	binary.Write(&b, binary.LittleEndian, uint32(3))
	b.Write([]byte{1, 2, 3, 0})
	b.WriteString("fmt ")
	b.Write(le(uint32(16), uint16(format), uint16(channels), uint32(rate),
		uint32(rate*align), uint16(align), uint16(bits)))
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

func le(vals ...any) []byte {
	var b bytes.Buffer
	for _, v := range vals {
		binary.Write(&b, binary.LittleEndian, v)
	}
	return b.Bytes()
}

func TestParseFormats(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     []byte
		want     []int16
		rate, ch int
	}{
		{"pcm16 stereo", build(1, 2, 44100, 16, le(int16(100), int16(-100), int16(32767), int16(1))), []int16{100, -100, 32767, 1}, 44100, 2},
		{"pcm8", build(1, 1, 8000, 8, []byte{128, 255, 0}), []int16{0, 127 << 8, -32768}, 8000, 1},
		{"pcm24", build(1, 1, 48000, 24, []byte{0xff, 0x34, 0x12, 0x00, 0x00, 0x80}), []int16{0x1234, -32768}, 48000, 1},
		{"pcm32", build(1, 1, 48000, 32, le(int32(0x12345678), int32(-1<<31))), []int16{0x1234, -32768}, 48000, 1},
		{"float32", build(3, 1, 16000, 32, le(float32(0.5), float32(-1), float32(2))), []int16{16384, -32768, 32767}, 16000, 1},
		{"float64", build(3, 1, 16000, 64, le(float64(-0.25))), []int16{-8192}, 16000, 1},
		{"odd trailing byte", build(1, 1, 48000, 16, []byte{1, 0, 2}), []int16{1}, 48000, 1},
		{"half a stereo frame", build(1, 2, 48000, 16, le(int16(1), int16(2), int16(3))), []int16{1, 2}, 48000, 2},
	} {
		got, rate, ch, err := Parse(tc.file)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if rate != tc.rate || ch != tc.ch || len(got) != len(tc.want) {
			t.Errorf("%s: rate %d ch %d samples %v", tc.name, rate, ch, got)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: samples %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}

func TestParseUnpatchedDataSize(t *testing.T) {
	file := build(1, 1, 48000, 16, le(int16(5), int16(6), int16(7)))
	binary.LittleEndian.PutUint32(file[len(file)-6-4:], 0xFFFFFFFF)
	got, _, _, err := Parse(file)
	if err != nil || len(got) != 3 || got[2] != 7 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestParseExtensible(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("RIFF\x00\x00\x00\x00WAVEfmt ")
	b.Write(le(uint32(40), uint16(0xFFFE), uint16(1), uint32(48000), uint32(96000), uint16(2), uint16(16),
		uint16(22), uint16(16), uint32(4)))
	b.Write(le(uint16(1))) // KSDATAFORMAT_SUBTYPE_PCM starts 01 00 00 00 …
	b.Write(make([]byte, 14))
	b.WriteString("data")
	b.Write(le(uint32(2), int16(-7)))
	got, _, _, err := Parse(b.Bytes())
	if err != nil || len(got) != 1 || got[0] != -7 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestParseMalformed(t *testing.T) {
	good := build(1, 1, 48000, 16, le(int16(1)))
	for _, tc := range []struct {
		name string
		file []byte
		msg  string
	}{
		{"empty", nil, "not a RIFF/WAVE file"},
		{"text", []byte("hello, this is not audio at all"), "not a RIFF/WAVE file"},
		{"no chunks", []byte("RIFF\x04\x00\x00\x00WAVE"), "no fmt chunk"},
		{"truncated fmt", good[:12+12+8+8], "fmt chunk of 16 bytes (have 8)"},
		{"no data", good[:12+12+24], "no data chunk"},
		{"mp3 in wav", build(0x55, 1, 48000, 16, nil), "format tag 0x55"},
		{"12-bit", build(1, 1, 48000, 12, nil), "12-bit samples"},
		{"0 channels", build(1, 0, 48000, 16, nil), "0 channels"},
		{"9 channels", build(1, 9, 48000, 16, nil), "9 channels"},
		{"0 Hz", build(1, 1, 0, 16, nil), "sample rate 0"},
		{"bad align", func() []byte { f := build(1, 2, 48000, 16, nil); f[32+12] = 3; return f }(), "block align 3"},
	} {
		_, _, _, err := Parse(tc.file)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !errors.Is(err, ErrFormat) || !bytes.Contains([]byte(err.Error()), []byte(tc.msg)) {
			t.Errorf("%s: error %q, want one containing %q", tc.name, err, tc.msg)
		}
	}
	path := filepath.Join(t.TempDir(), "bad.wav")
	os.WriteFile(path, []byte("not a wav"), 0o644)
	if _, _, _, err := ReadFile(path); err == nil || !bytes.Contains([]byte(err.Error()), []byte(path)) {
		t.Errorf("ReadFile error does not name the file: %v", err)
	}
	if _, _, _, err := ReadFile(filepath.Join(t.TempDir(), "missing.wav")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestToAgentFormat(t *testing.T) {
	// 1 s of a 700 Hz stereo tone at 44.1 kHz, right channel silent.
	n := 44100
	mono := make([]int16, n)
	audio.Sine(mono, 44100, 700, 0.6, 0)
	stereo := make([]int16, 2*n)
	for i, v := range mono {
		stereo[2*i] = v
	}
	got := ToAgentFormat(stereo, 44100, 2)
	if len(got) != device.SampleRate {
		t.Fatalf("%d samples, want %d", len(got), device.SampleRate)
	}
	if f := audio.DominantFrequency(got, device.SampleRate); math.Abs(f-700) > 1 {
		t.Fatalf("frequency %.2f", f)
	}
	want := 0.3 * 32767 / math.Sqrt2 // averaging with silence halves the amplitude
	if r := audio.RMS(got); math.Abs(20*math.Log10(r/want)) > 0.2 {
		t.Fatalf("RMS %.0f, want %.0f", r, want)
	}
	up := Resample([]int16{0, 100}, 1, 4)
	if len(up) != 8 || up[1] != 25 || up[2] != 50 || up[7] != 100 {
		t.Fatalf("upsample: %v", up)
	}
}

func writeFile(t *testing.T, samples []int16, rate, channels int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.wav")
	data := le(samples)
	if err := os.WriteFile(path, build(1, channels, rate, 16, data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMicrophoneLoops(t *testing.T) {
	// 1.5 frames of a ramp, so the loop point falls inside the second frame.
	src := make([]int16, device.FrameSamples*3/2)
	for i := range src {
		src[i] = int16(i)
	}
	mic, err := OpenMicrophone(writeFile(t, src, device.SampleRate, 1), Unpaced())
	if err != nil {
		t.Fatal(err)
	}
	defer mic.Close()
	if mic.Len() != len(src) {
		t.Fatalf("Len %d", mic.Len())
	}
	pcm := make([]int16, device.FrameSamples)
	var got []int16
	for i := 0; i < 4; i++ {
		if err := mic.ReadFrame(context.Background(), pcm); err != nil {
			t.Fatal(err)
		}
		got = append(got, pcm...)
	}
	for i, v := range got {
		if want := int16(i % len(src)); v != want {
			t.Fatalf("sample %d = %d, want %d", i, v, want)
		}
	}
}

func TestMicrophonePacedAndClose(t *testing.T) {
	tone := make([]int16, 8000)
	audio.Sine(tone, 8000, 500, 0.5, 0)
	mic, err := OpenMicrophone(writeFile(t, tone, 8000, 1))
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, device.FrameSamples)
	var all []int16
	start := time.Now()
	for i := 0; i < 10; i++ {
		if err := mic.ReadFrame(context.Background(), pcm); err != nil {
			t.Fatal(err)
		}
		all = append(all, pcm...)
	}
	if el := time.Since(start); el < 9*device.FrameDuration || el > 9*device.FrameDuration+2*time.Second {
		t.Fatalf("10 frames in %v", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := mic.ReadFrame(ctx, pcm); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	if f := audio.DominantFrequency(all, device.SampleRate); math.Abs(f-500) > 1 {
		t.Fatalf("frequency %.2f", f)
	}
	go func() { time.Sleep(2 * time.Millisecond); mic.Close() }()
	var rerr error
	for rerr == nil {
		rerr = mic.ReadFrame(context.Background(), pcm)
	}
	if !errors.Is(rerr, ErrClosed) {
		t.Fatalf("after Close: %v", rerr)
	}
}

func TestOpenMicrophoneErrors(t *testing.T) {
	if _, err := OpenMicrophone(filepath.Join(t.TempDir(), "none.wav")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := OpenMicrophone(writeFile(t, nil, 48000, 1)); err == nil {
		t.Error("empty file accepted")
	}
}

func FuzzReadWAV(f *testing.F) {
	f.Add(build(1, 1, 48000, 16, le(int16(1), int16(2))))
	f.Add(build(1, 2, 44100, 24, make([]byte, 12)))
	f.Add(build(3, 1, 16000, 32, le(float32(0.1))))
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVEfmt \x28\x00\x00\x00\xfe\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		samples, rate, channels, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error not wrapping ErrFormat: %v", err)
			}
			return
		}
		if channels < 1 || channels > 8 || rate < 1 || len(samples)%channels != 0 || len(samples) > len(data) {
			t.Fatalf("rate %d channels %d samples %d from %d bytes", rate, channels, len(samples), len(data))
		}
		if rate <= 192000 && len(samples) < 1<<16 {
			ToAgentFormat(samples, rate, channels)
		}
	})
}
