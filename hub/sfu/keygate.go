package sfu

import (
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// keyGate follows one published video stream packet by packet and says at which packets a
// subscriber that is waiting for a keyframe may start. A subscriber must start at the first
// packet of an access unit that is a whole keyframe, never inside one: a viewer that joins in
// the middle of an IDR (at its second slice, or after the parameter sets) gets a picture it
// cannot decode, followed by P-frames that depend on it.
//
// The gate sees every packet of the stream, in the order the publisher sent them, from the
// track's forwarding goroutine only.
type keyGate struct {
	h264 bool // else VP8

	started    bool
	lastTS     uint32
	lastMarker bool
	// prefixOnly: so far the current access unit has carried only NAL units that may precede
	// the parameter sets (access unit delimiter, SEI, filler). Such packets are not sent to a
	// waiting subscriber: it starts at the parameter sets that follow them.
	prefixOnly bool
	// inbandSPS: the stream carries its sequence parameter sets in band. Then only an access
	// unit that begins with them is a start; otherwise (parameter sets only in the SDP) an IDR
	// whose first slice starts the picture is.
	inbandSPS bool
}

// h264 start kinds of one RTP payload.
const (
	startOther  = iota // anything else: a P-frame, a later slice, the middle of a fragment
	startPrefix        // AUD, SEI, filler, or the rest of a fragment of one
	startSPS           // a sequence parameter set first
	startIDR           // an IDR slice with first_mb_in_slice = 0 first
)

// step takes the stream's next packet and reports whether a waiting subscriber may start at it.
func (g *keyGate) step(p *rtp.Packet) bool {
	auStart := !g.started || g.lastMarker || p.Timestamp != g.lastTS
	g.started, g.lastTS, g.lastMarker = true, p.Timestamp, p.Marker
	if !g.h264 {
		return auStart && vp8KeyframeStart(p.Payload)
	}
	kind := h264Start(p.Payload)
	if kind == startSPS || h264CarriesSPS(p.Payload) {
		g.inbandSPS = true
	}
	if auStart {
		g.prefixOnly = true
	}
	if !g.prefixOnly {
		return false
	}
	switch kind {
	case startPrefix:
		return false
	case startSPS:
		g.prefixOnly = false
		return true
	case startIDR:
		g.prefixOnly = false
		return !g.inbandSPS
	}
	g.prefixOnly = false
	return false
}

// h264Start classifies how an H.264 RTP payload (RFC 6184, packetization mode 0 or 1) begins.
func h264Start(p []byte) int {
	if len(p) < 1 {
		return startOther
	}
	switch t := p[0] & 0x1f; t {
	case 24: // STAP-A: [size:16][NAL]…; the first NAL unit that is not a prefix decides
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			nal := p[i+2 : min(len(p), i+2+size)]
			if k := h264NALStart(nal); k != startPrefix {
				return k
			}
			i += 2 + size
		}
		return startPrefix
	case 28: // FU-A: indicator, header (S, E, R, type), then the fragment
		if len(p) < 2 {
			return startOther
		}
		if p[1]&0x80 == 0 {
			return startPrefix // a continuation: neutral; its start decided already
		}
		return h264NALStart(append([]byte{p[0]&0xe0 | p[1]&0x1f}, p[2:min(len(p), 3)]...))
	case 25, 26, 27, 29: // STAP-B, MTAP, FU-B: not in the modes we negotiate
		return startOther
	default:
		return h264NALStart(p)
	}
}

// h264NALStart classifies one whole (or first fragment of a) NAL unit, header byte first.
func h264NALStart(nal []byte) int {
	if len(nal) < 1 {
		return startOther
	}
	switch nal[0] & 0x1f {
	case 6, 9, 12: // SEI, access unit delimiter, filler
		return startPrefix
	case 7:
		return startSPS
	case 5:
		// The slice header begins with first_mb_in_slice as ue(v): 0 is the single bit 1.
		if len(nal) >= 2 && nal[1]&0x80 != 0 {
			return startIDR
		}
	}
	return startOther
}

// h264CarriesSPS reports whether a STAP-A carries an SPS anywhere in it.
func h264CarriesSPS(p []byte) bool {
	if len(p) < 1 || p[0]&0x1f != 24 {
		return false
	}
	for i := 1; i+2 < len(p); {
		size := int(p[i])<<8 | int(p[i+1])
		if p[i+2]&0x1f == 7 {
			return true
		}
		i += 2 + size
	}
	return false
}

// boundTrack is a subscriber's local track that knows whether pion has bound it to the
// subscriber's connection: packets written before that are dropped without an error, so a
// keyframe must not be spent on a track that is not bound yet.
type boundTrack struct {
	*webrtc.TrackLocalStaticRTP
	bindings atomic.Int32
}

func (b *boundTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	c, err := b.TrackLocalStaticRTP.Bind(ctx)
	if err == nil {
		b.bindings.Add(1)
	}
	return c, err
}

func (b *boundTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	err := b.TrackLocalStaticRTP.Unbind(ctx)
	if err == nil {
		b.bindings.Add(-1)
	}
	return err
}

func (b *boundTrack) bound() bool { return b.bindings.Load() > 0 }
