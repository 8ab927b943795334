// Package wav reads and writes RIFF/WAVE files for the agent's audio: Writer is a
// device.Speaker that records 48 kHz mono 16-bit PCM to a file that stays valid while it
// is being written, Microphone plays a WAV file as a device.Microphone (the `wav:PATH`
// spec) in real time, looping, and ReadFile/Parse decode PCM WAV files from untrusted
// sources without panicking.
//
// The format follows Microsoft's RIFF WAVE layout: a "RIFF" chunk of form "WAVE"
// holding a "fmt " chunk (WAVE_FORMAT_PCM, IEEE float or EXTENSIBLE) and a "data"
// chunk; other chunks are skipped.
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/camagent/camagent/device"
)

// Format tags of the "fmt " chunk.
const (
	formatPCM        = 1
	formatFloat      = 3
	formatExtensible = 0xFFFE
)

// MaxFileSize bounds the files ReadFile loads into memory (about 45 minutes of 48 kHz
// stereo 16-bit).
const MaxFileSize = 512 << 20

// ErrFormat is wrapped by every error about a malformed or unsupported file.
var ErrFormat = errors.New("wav: bad format")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
}

// ReadFile reads the WAV file at path and returns its samples as 16-bit, interleaved
// when channels > 1, with the file's sample rate and channel count. Use ToAgentFormat
// to get 48 kHz mono.
func ReadFile(path string) (samples []int16, rate, channels int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("wav: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("wav: %w", err)
	}
	if st.Size() > MaxFileSize {
		return nil, 0, 0, fmt.Errorf("wav: %s: %d bytes is over the %d-byte limit", path, st.Size(), MaxFileSize)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, 0, 0, fmt.Errorf("wav: read %s: %w", path, err)
	}
	samples, rate, channels, err = Parse(data)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%w (in %s)", err, path)
	}
	return samples, rate, channels, nil
}

// Parse decodes a WAV file held in data. It accepts integer PCM of 8, 16, 24 or 32
// bits and 32/64-bit IEEE float (plain or WAVE_FORMAT_EXTENSIBLE), 1–8 channels, any
// rate from 1 Hz to 768 kHz, converting samples to 16-bit. A data chunk whose size is
// 0xFFFFFFFF or runs past the end of data (a file still being written, or cut short)
// is read up to the last whole sample frame. Errors wrap ErrFormat.
func Parse(data []byte) (samples []int16, rate, channels int, err error) {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, 0, 0, formatErr("not a RIFF/WAVE file")
	}
	var (
		haveFmt      bool
		format, bits int
		blockAlign   int
		body         []byte
		haveData     bool
		off          = 12
	)
	for off+8 <= len(data) && !haveData {
		id := string(data[off : off+4])
		size := int64(binary.LittleEndian.Uint32(data[off+4 : off+8]))
		off += 8
		rest := int64(len(data) - off)
		switch id {
		case "fmt ":
			if size < 16 || size > rest {
				return nil, 0, 0, formatErr("fmt chunk of %d bytes (have %d)", size, rest)
			}
			c := data[off : off+int(size)]
			format = int(binary.LittleEndian.Uint16(c[0:2]))
			channels = int(binary.LittleEndian.Uint16(c[2:4]))
			rate = int(binary.LittleEndian.Uint32(c[4:8]))
			blockAlign = int(binary.LittleEndian.Uint16(c[12:14]))
			bits = int(binary.LittleEndian.Uint16(c[14:16]))
			if format == formatExtensible {
				if size < 40 {
					return nil, 0, 0, formatErr("extensible fmt chunk of %d bytes, want 40", size)
				}
				// The sub-format GUID starts with the format tag; samples are decoded
				// by their container size (bits), whatever the valid bits say.
				format = int(binary.LittleEndian.Uint16(c[24:26]))
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, 0, 0, formatErr("data chunk before fmt chunk")
			}
			if size > rest { // unpatched header (0xFFFFFFFF) or truncated file
				size = rest
			}
			body = data[off : off+int(size)]
			haveData = true
		}
		if size > rest {
			break
		}
		off += int(size) + int(size&1) // chunks are padded to even sizes
	}
	if !haveFmt {
		return nil, 0, 0, formatErr("no fmt chunk")
	}
	if !haveData {
		return nil, 0, 0, formatErr("no data chunk")
	}
	if channels < 1 || channels > 8 {
		return nil, 0, 0, formatErr("%d channels (supported: 1–8)", channels)
	}
	if rate < 1 || rate > 768000 {
		return nil, 0, 0, formatErr("sample rate %d Hz", rate)
	}
	var conv func([]byte) int16
	switch {
	case format == formatPCM && bits == 8:
		conv = func(b []byte) int16 { return int16(int(b[0])-128) << 8 }
	case format == formatPCM && bits == 16:
		conv = func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }
	case format == formatPCM && bits == 24:
		conv = func(b []byte) int16 { return int16(uint16(b[1]) | uint16(b[2])<<8) }
	case format == formatPCM && bits == 32:
		conv = func(b []byte) int16 { return int16(binary.LittleEndian.Uint32(b) >> 16) }
	case format == formatFloat && bits == 32:
		conv = func(b []byte) int16 { return floatSample(float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))) }
	case format == formatFloat && bits == 64:
		conv = func(b []byte) int16 { return floatSample(math.Float64frombits(binary.LittleEndian.Uint64(b))) }
	case format == formatPCM || format == formatFloat:
		return nil, 0, 0, formatErr("%d-bit samples in format %d are not supported", bits, format)
	default:
		return nil, 0, 0, formatErr("format tag %#x is not PCM or IEEE float", format)
	}
	width := bits / 8
	if blockAlign != width*channels {
		return nil, 0, 0, formatErr("block align %d, want %d for %d channels of %d bits", blockAlign, width*channels, channels, bits)
	}
	n := len(body) / width
	n -= n % channels // whole sample frames only
	samples = make([]int16, n)
	for i := range samples {
		samples[i] = conv(body[i*width:])
	}
	return samples, rate, channels, nil
}

func floatSample(v float64) int16 {
	v = math.Round(v * 32768)
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	case math.IsNaN(v):
		return 0
	}
	return int16(v)
}

// ToMono mixes interleaved samples of channels channels down to mono by averaging.
// Mono input is returned as is.
func ToMono(samples []int16, channels int) []int16 {
	if channels <= 1 {
		return samples
	}
	out := make([]int16, len(samples)/channels)
	for i := range out {
		sum := 0
		for c := 0; c < channels; c++ {
			sum += int(samples[i*channels+c])
		}
		out[i] = int16(sum / channels)
	}
	return out
}

// Resample converts mono samples from rate from to rate to by linear interpolation.
// It does not low-pass filter, so downsampling content above the new Nyquist aliases;
// that is acceptable for test signals and speech prompts, not for music.
func Resample(samples []int16, from, to int) []int16 {
	if from == to || from <= 0 || to <= 0 || len(samples) == 0 {
		return samples
	}
	n := int(int64(len(samples)) * int64(to) / int64(from))
	out := make([]int16, n)
	step := float64(from) / float64(to)
	last := len(samples) - 1
	for i := range out {
		pos := float64(i) * step
		j := int(pos)
		if j >= last {
			out[i] = samples[last]
			continue
		}
		frac := pos - float64(j)
		out[i] = int16(math.Round(float64(samples[j])*(1-frac) + float64(samples[j+1])*frac))
	}
	return out
}

// ToAgentFormat converts interleaved samples of any rate and channel count to the
// agent's 48 kHz mono.
func ToAgentFormat(samples []int16, rate, channels int) []int16 {
	return Resample(ToMono(samples, channels), rate, device.SampleRate)
}
