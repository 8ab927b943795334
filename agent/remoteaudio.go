package agent

import (
	"context"
	"time"

	"github.com/pion/webrtc/v4"
)

// play decodes a remote audio track (Opus, or G.711) into the mixer until the track or ctx
// ends, then logs what it received (packets, padding-only ones, sequence gaps, decode errors).
func (c *call) play(ctx context.Context, track *webrtc.TrackRemote, key string) {
	decode, conceal, err := audioDecoder(track.Codec().MimeType)
	if err != nil {
		c.log.Error("audio decoder", "remote", key, "err", err)
		return
	}
	in := c.mixer.Input(key)
	if conceal != nil {
		in = c.mixer.ConcealedInput(key, conceal)
	}
	defer in.Close()
	unblock := context.AfterFunc(ctx, func() { track.SetReadDeadline(time.Now()) }) // unblock ReadRTP
	defer unblock()
	pcm := make([]int16, 0, 5760) // up to 120 ms at 48 kHz
	var got receivedAudio
	defer func() { c.log.Debug("remote audio ended", append([]any{"remote", key}, got.attrs()...)...) }()
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		got.packet(pkt.SequenceNumber, len(pkt.Payload))
		out, err := decode(pkt.Payload, pcm[:0])
		if err != nil {
			if got.decodeErrors%100 == 0 {
				c.log.Warn("decode remote audio", "remote", key, "err", err, "errors", got.decodeErrors+1)
			}
			got.decodeErrors++
			continue
		}
		if len(out) > 0 {
			in.WriteFrame(out)
		}
	}
}

// receivedAudio counts what a remote audio track delivered.
type receivedAudio struct {
	packets, empty, gaps, decodeErrors uint64
	lost                               uint64 // packets missing in the gaps
	last                               uint16 // sequence number of the last packet
}

func (r *receivedAudio) packet(seq uint16, payload int) {
	if r.packets > 0 {
		// A step back (reordered or repeated) is not a gap; one forward by d misses d-1.
		if d := seq - r.last; d > 1 && d < 1<<15 {
			r.gaps++
			r.lost += uint64(d - 1)
		}
	}
	if r.packets == 0 || seq-r.last < 1<<15 {
		r.last = seq
	}
	r.packets++
	if payload == 0 {
		r.empty++
	}
}

func (r *receivedAudio) attrs() []any {
	return []any{"packets", r.packets, "padding_only", r.empty, "seq_gaps", r.gaps, "lost", r.lost, "decode_errors", r.decodeErrors}
}
