// Package opus encodes and decodes the agent's audio (48 kHz mono, 20 ms frames) with
// Opus, wrapping the pure-Go codec github.com/thesyncim/gopus so the binary needs no
// cgo. An Encoder turns one device.FrameSamples frame into one packet (the RTP payload
// of RFC 7587); a Decoder turns packets from any Opus sender back into 48 kHz mono and
// conceals lost packets.
//
// Encoders and Decoders are not safe for concurrent use: each stream owns one.
package opus

import (
	"errors"
	"fmt"

	"github.com/thesyncim/gopus"

	"github.com/camagent/camagent/device"
)

const (
	// DefaultBitrate is the encoder's target bitrate in bit/s: wideband speech and
	// better, well under any link a camera has.
	DefaultBitrate = 32000
	// DefaultComplexity trades CPU for quality (0–10); 5 keeps a 20 ms frame
	// affordable on a Raspberry Pi Zero while sounding close to 10 for speech.
	DefaultComplexity = 5
	// MaxPacketSize is a buffer size that holds any Opus packet.
	MaxPacketSize = 1275
	// MaxFrameSamples is the most samples (120 ms at 48 kHz) one packet can decode to;
	// a Decode buffer of this size accepts packets of any duration.
	MaxFrameSamples = 5760
)

// Encoder encodes 20 ms frames of 48 kHz mono PCM into Opus packets.
type Encoder struct {
	enc *gopus.Encoder
}

// EncoderOption configures an Encoder.
type EncoderOption struct {
	apply func(*gopus.Encoder) error
}

// Bitrate limits in bit/s accepted by WithBitrate and SetBitrate.
const (
	MinBitrate = 6000
	MaxBitrate = 510000
)

// WithBitrate sets the target bitrate in bit/s (MinBitrate–MaxBitrate).
func WithBitrate(bps int) EncoderOption {
	return EncoderOption{func(e *gopus.Encoder) error { return setBitrate(e, bps) }}
}

func setBitrate(e *gopus.Encoder, bps int) error {
	if bps < MinBitrate || bps > MaxBitrate {
		return fmt.Errorf("bitrate %d bit/s out of range %d–%d", bps, MinBitrate, MaxBitrate)
	}
	return e.SetBitrate(bps)
}

// WithComplexity sets the encoder complexity, 0 (cheapest) to 10 (best).
func WithComplexity(c int) EncoderOption {
	return EncoderOption{func(e *gopus.Encoder) error { return e.SetComplexity(c) }}
}

// NewEncoder returns an encoder for 48 kHz mono, VoIP application, 20 ms frames,
// DefaultBitrate, DefaultComplexity and in-band FEC enabled (it carries redundancy
// once SetPacketLoss reports loss), adjusted by opts.
func NewEncoder(opts ...EncoderOption) (*Encoder, error) {
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{
		SampleRate:  device.SampleRate,
		Channels:    device.Channels,
		Application: gopus.ApplicationVoIP,
	})
	if err != nil {
		return nil, fmt.Errorf("opus: new encoder: %w", err)
	}
	if err := enc.SetFrameSize(device.FrameSamples); err != nil {
		return nil, fmt.Errorf("opus: set frame size: %w", err)
	}
	if err := enc.SetBitrate(DefaultBitrate); err != nil {
		return nil, fmt.Errorf("opus: set bitrate: %w", err)
	}
	if err := enc.SetComplexity(DefaultComplexity); err != nil {
		return nil, fmt.Errorf("opus: set complexity: %w", err)
	}
	enc.SetFEC(true)
	for _, o := range opts {
		if err := o.apply(enc); err != nil {
			return nil, fmt.Errorf("opus: configure encoder: %w", err)
		}
	}
	return &Encoder{enc: enc}, nil
}

// Encode encodes one frame of exactly device.FrameSamples samples into out (size it
// MaxPacketSize) and returns the packet length.
func (e *Encoder) Encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) != device.FrameSamples {
		return 0, fmt.Errorf("opus: encode: frame has %d samples, want %d", len(pcm), device.FrameSamples)
	}
	n, err := e.enc.EncodeInt16(pcm, out)
	if err != nil {
		return 0, fmt.Errorf("opus: encode: %w", err)
	}
	return n, nil
}

// SetBitrate changes the target bitrate (bit/s) from the next frame on, e.g. to follow
// congestion control.
func (e *Encoder) SetBitrate(bps int) error {
	if err := setBitrate(e.enc, bps); err != nil {
		return fmt.Errorf("opus: set bitrate: %w", err)
	}
	return nil
}

// Bitrate returns the target bitrate in bit/s.
func (e *Encoder) Bitrate() int { return e.enc.Bitrate() }

// SetPacketLoss tells the encoder the expected packet loss (0–100 %, e.g. from RTCP
// receiver reports); it then spends bits on in-band FEC accordingly.
func (e *Encoder) SetPacketLoss(percent int) error {
	if err := e.enc.SetPacketLoss(percent); err != nil {
		return fmt.Errorf("opus: set packet loss %d%%: %w", percent, err)
	}
	return nil
}

// Reset clears the encoder's state, as for a new stream.
func (e *Encoder) Reset() { e.enc.Reset() }

// Decoder decodes Opus packets into 48 kHz mono PCM.
type Decoder struct {
	dec     *gopus.Decoder
	decoded bool      // a packet has been decoded since creation
	fec     []float32 // scratch for DecodeFEC
}

// ErrBufferTooSmall is returned when a Decode buffer cannot hold the packet's samples.
var ErrBufferTooSmall = errors.New("opus: pcm buffer too small for packet")

// NewDecoder returns a decoder producing 48 kHz mono. It accepts packets from any
// Opus encoder (stereo packets are downmixed).
func NewDecoder() (*Decoder, error) {
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(device.SampleRate, device.Channels))
	if err != nil {
		return nil, fmt.Errorf("opus: new decoder: %w", err)
	}
	return &Decoder{dec: dec}, nil
}

// Decode decodes packet into pcm and returns the number of samples written: 960 for
// a 20 ms packet. pcm must hold the packet's duration (MaxFrameSamples always does).
// An empty packet is treated as lost (see DecodeLost).
func (d *Decoder) Decode(packet []byte, pcm []int16) (int, error) {
	if len(packet) == 0 {
		return d.DecodeLost(pcm)
	}
	n, err := d.dec.DecodeInt16(packet, pcm)
	if err != nil {
		if errors.Is(err, gopus.ErrBufferTooSmall) {
			return 0, fmt.Errorf("opus: decode %d-byte packet into %d samples: %w", len(packet), len(pcm), ErrBufferTooSmall)
		}
		return 0, fmt.Errorf("opus: decode %d-byte packet: %w", len(packet), err)
	}
	d.decoded = true
	return n, nil
}

// Decoded reports whether a packet has been decoded since creation (or Reset): before
// that, DecodeLost has nothing to conceal and yields silence.
func (d *Decoder) Decoded() bool { return d.decoded }

// DecodeLost fills pcm with a concealment of one missing packet of len(pcm) samples
// (normally device.FrameSamples; a multiple of 120) and returns len(pcm). Before the
// first packet, or if concealment fails, it yields silence.
func (d *Decoder) DecodeLost(pcm []int16) (int, error) {
	if d.decoded {
		if n, err := d.dec.DecodeInt16(nil, pcm); err == nil && n == len(pcm) {
			return n, nil
		}
	}
	clear(pcm)
	return len(pcm), nil
}

// DecodeFEC recovers the packet lost just before next from next's in-band FEC data
// into pcm (len(pcm) samples: the lost packet's duration), falling back to
// concealment when next carries none. Decode next itself afterwards.
func (d *Decoder) DecodeFEC(next []byte, pcm []int16) (int, error) {
	if !d.decoded || len(next) == 0 {
		return d.DecodeLost(pcm)
	}
	if cap(d.fec) < len(pcm) {
		d.fec = make([]float32, len(pcm))
	}
	buf := d.fec[:len(pcm)]
	n, err := d.dec.DecodeWithFEC(next, buf, true)
	if err != nil {
		return d.DecodeLost(pcm)
	}
	for i, v := range buf[:n] {
		v *= 32768
		switch {
		case v >= 32767:
			pcm[i] = 32767
		case v <= -32768:
			pcm[i] = -32768
		default:
			pcm[i] = int16(v)
		}
	}
	return n, nil
}

// Reset clears the decoder's state, as for a new stream.
func (d *Decoder) Reset() {
	d.dec.Reset()
	d.decoded = false
}
