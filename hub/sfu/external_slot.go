// external_slot.go: one m-line of a WHEP viewer's connection, a local track fed by one
// published track at a time (renumbered across sources), its NACKs and its RTCP.

package sfu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// slot is one m-line of a WHEP viewer's connection: a local track fed by one published track
// at a time. Sequence numbers and timestamps continue across a change of source, so the
// viewer sees one stream; the payload type follows the source's codec among those negotiated.
type slot struct {
	kind   string
	id     string
	sender *webrtc.RTPSender

	mu     sync.Mutex
	w      webrtc.TrackLocalWriter
	ssrc   webrtc.SSRC
	codecs []webrtc.RTPCodecParameters
	src    *track
	feed   *slotFeed
	// rewriting: the last sequence number and timestamp sent, and the current source's offsets
	sent            bool
	lastSeq         uint16
	lastTS          uint32
	seqOff          uint16
	tsOff           uint32
	pendingRestart  bool
	frameTicksOnGap uint32
	firstSeq        uint16 // the current source's first packet sent, in its own numbers
}

// slotFeed is a slot's current source: its payload type on the viewer's connection.
type slotFeed struct {
	slot *slot
	pt   uint8
}

func newSlot(kind string, i int) *slot {
	gap := uint32(3000) // a frame at 30/s on the 90 kHz video clock
	if kind == rtc.KindAudio {
		gap = 960 // 20 ms at 48 kHz
	}
	return &slot{kind: kind, id: fmt.Sprintf("%s-%d", kind, i), frameTicksOnGap: gap}
}

// Bind is pion binding the slot to the viewer's connection once the answer is set.
func (sl *slot) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.w, sl.ssrc, sl.codecs = ctx.WriteStream(), ctx.SSRC(), codecs
	return codecs[0], nil
}

// Unbind is pion unbinding it (the connection closes).
func (sl *slot) Unbind(webrtc.TrackLocalContext) error {
	sl.mu.Lock()
	sl.w = nil
	sl.mu.Unlock()
	return nil
}

func (sl *slot) ID() string { return sl.id }

func (sl *slot) RID() string { return "" }

func (sl *slot) StreamID() string { return "camagent" }

func (sl *slot) Kind() webrtc.RTPCodecType {
	if sl.kind == rtc.KindAudio {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

func (sl *slot) source() *track {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.src
}

func (sl *slot) setSource(t *track, f *slotFeed) {
	sl.mu.Lock()
	sl.src, sl.feed, sl.pendingRestart = t, f, true
	sl.mu.Unlock()
}

// feedFor returns a feed of t's codec on this slot, or nil when the viewer's connection did
// not negotiate it (or is not bound yet).
func (sl *slot) feedFor(t *track) *slotFeed {
	c := t.remote.Codec()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	var match *webrtc.RTPCodecParameters
	for i := range sl.codecs {
		n := &sl.codecs[i]
		if !strings.EqualFold(n.MimeType, c.MimeType) {
			continue
		}
		if n.SDPFmtpLine == c.SDPFmtpLine {
			match = n
			break
		}
		if match == nil {
			match = n
		}
	}
	if match == nil {
		return nil
	}
	return &slotFeed{slot: sl, pt: uint8(match.PayloadType)}
}

// preferOurCodecs orders the codecs of sender's m-line in the answer as rtc.Codecs does (the
// device's H.264 profile first), not in the offer's order. A slot can carry any of them, but a
// WHEP client that takes the answer's first codec as the one it will get (go2rtc 1.9, the
// engine of Home Assistant's cameras, binds its consumers to it and leaves packets of another
// payload type unread) then expects what a device sends.
func preferOurCodecs(pc *webrtc.PeerConnection, sender *webrtc.RTPSender) error {
	var tr *webrtc.RTPTransceiver
	for _, t := range pc.GetTransceivers() {
		if t.Sender() == sender {
			tr = t
		}
	}
	if tr == nil {
		return errors.New("no transceiver for the slot")
	}
	negotiated := sender.GetParameters().Codecs
	if len(negotiated) < 2 {
		return nil
	}
	ours := rtc.Codecs()
	rank := func(c webrtc.RTPCodecParameters) int {
		best := 2 * len(ours)
		for i, o := range ours {
			if !strings.EqualFold(o.MimeType, c.MimeType) {
				continue
			}
			if o.SDPFmtpLine == c.SDPFmtpLine {
				return i
			}
			best = min(best, len(ours)+i) // same codec, other parameters: after every exact match
		}
		return best
	}
	slices.SortStableFunc(negotiated, func(a, b webrtc.RTPCodecParameters) int { return rank(a) - rank(b) })
	return tr.SetCodecPreferences(negotiated)
}

// ready reports whether the slot is bound to the viewer's connection with this feed.
func (f *slotFeed) ready() bool {
	sl := f.slot
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.feed == f && sl.w != nil
}

// write sends one of the source's packets on the slot (a packet of a former source is dropped).
func (f *slotFeed) write(p *rtp.Packet) error {
	sl := f.slot
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.feed != f || sl.w == nil {
		return nil
	}
	if sl.pendingRestart {
		sl.pendingRestart = false
		sl.seqOff, sl.tsOff = 0, 0
		if sl.sent {
			sl.seqOff = sl.lastSeq + 1 - p.SequenceNumber
			sl.tsOff = sl.lastTS + sl.frameTicksOnGap - p.Timestamp
		}
		sl.firstSeq = p.SequenceNumber
	}
	h := p.Header
	h.SSRC = uint32(sl.ssrc)
	h.PayloadType = f.pt
	h.SequenceNumber += sl.seqOff
	h.Timestamp += sl.tsOff
	sl.sent, sl.lastSeq, sl.lastTS = true, h.SequenceNumber, h.Timestamp
	_, err := sl.w.WriteRTP(&h, p.Payload)
	return err
}

// resend answers the viewer's NACK for seqs (the slot's numbers) from the current source's
// cache, mapped back to the source's numbers; packets of an earlier source are not resent.
func (sl *slot) resend(seqs []uint16) {
	if len(seqs) == 0 {
		return
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	t := sl.src
	if t == nil || t.cache == nil || sl.feed == nil || sl.w == nil || !sl.sent || sl.pendingRestart {
		return
	}
	for _, seq := range seqs {
		orig := seq - sl.seqOff
		if int16(orig-sl.firstSeq) < 0 || int16(sl.lastSeq-seq) < 0 {
			continue // before this source, or never sent
		}
		p := t.cache.get(orig)
		if p == nil {
			t.svc.nackMissed.Add(1)
			continue
		}
		h := p.Header
		h.SSRC, h.PayloadType = uint32(sl.ssrc), sl.feed.pt
		h.SequenceNumber, h.Timestamp = seq, p.Timestamp+sl.tsOff
		if _, err := sl.w.WriteRTP(&h, p.Payload); err != nil {
			return
		}
		t.svc.nackResent.Add(1)
	}
}

// readRTCP drains the viewer's RTCP for the slot and relays its keyframe requests to the
// slot's current source.
func (sl *slot) readRTCP() {
	peer.DrainRTCP(sl.sender, peer.Feedback{
		Keyframe: func() {
			if t := sl.source(); t != nil {
				t.requestKeyframe()
			}
		},
		NACK: sl.resend,
	})
}
