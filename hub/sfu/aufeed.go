package sfu

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// A data-channel subscription (rtc.TransportDataChannel) carries a video track's H.264 access
// units on a data channel of the subscriber's subscribe connection, for a browser whose WebRTC
// has no H.264 but whose WebCodecs decodes it (Firefox without the OpenH264 plugin). It shares
// the connection's ICE, DTLS and token with the RTP subscriptions, and is fed by the same
// forwarding as they are: the subscriber's outlet is a TrackLocalStaticRTP bound to an auFeed
// instead of to an RTP sender, so the keyframe gate, keyframe requests and fan-out apply as
// they are. Nothing is transcoded: RTP payloads are depacketized (RFC 6184) into Annex B.
//
// Each access unit goes out as one or more messages of at most dcFragment bytes, each with a
// 12-byte header (big endian): version (1), flags (dcFlagKey: the access unit has an IDR;
// dcFlagFirst, dcFlagLast: first and last fragment), the access unit's number (uint32, one
// more for each unit sent: a gap means units were lost), its RTP timestamp (uint32, 90 kHz)
// and the fragment's index (uint16). The subscriber may send the text "keyframe" when it saw a
// gap (relayed to the publisher as a PLI, throttled as PLIs are).

const (
	dcHeader   = 12
	dcFragment = 16 << 10 // every browser takes messages of 16 KiB
	dcVersion  = 1

	dcFlagKey   = 0x01
	dcFlagFirst = 0x02
	dcFlagLast  = 0x04

	// dcMaxBuffered: a subscriber this far behind skips to the next keyframe.
	dcMaxBuffered = 1 << 20
	// dcLifetimeMs bounds how long SCTP retransmits a message: late video is no use.
	dcLifetimeMs = 300
	// dcKeyframeRequest is what a subscriber sends to ask for a keyframe.
	dcKeyframeRequest = "keyframe"
)

// dcLabel names the data channel of a subscription to uid's video.
func dcLabel(uid uint32) string { return fmt.Sprintf("camagent/video/%d", uid) }

// auFeed assembles one subscriber's access units from the track's RTP and sends them.
type auFeed struct {
	t      *track
	dc     *webrtc.DataChannel
	local  *boundTrack
	ctx    *auContext
	open   atomic.Bool
	closed atomic.Bool

	mu      sync.Mutex // WriteRTP may come from any of the track's fan-out workers
	depack  codecs.H264Packet
	au      []byte
	auTS    uint32
	inAU    bool
	lastSeq uint16
	seqSeen bool
	broken  bool // a packet of this access unit was lost
	needKey bool // units are skipped until one with an IDR
	number  uint32
	sent    atomic.Uint64
}

// newAUFeed opens the data channel for a subscription to t on pc and returns the feed and the
// outlet to add to the track.
func newAUFeed(pc *webrtc.PeerConnection, t *track) (*auFeed, *outlet, error) {
	out, err := t.newOutlet()
	if err != nil {
		return nil, nil, err
	}
	ordered, lifetime := true, uint16(dcLifetimeMs)
	dc, err := pc.CreateDataChannel(dcLabel(t.uid), &webrtc.DataChannelInit{Ordered: &ordered, MaxPacketLifeTime: &lifetime})
	if err != nil {
		return nil, nil, fmt.Errorf("create data channel: %w", err)
	}
	f := &auFeed{t: t, dc: dc, local: out.local}
	f.ctx = &auContext{feed: f, codec: t.remote.Codec(), id: dc.Label()}
	if _, err := out.local.Bind(f.ctx); err != nil {
		dc.Close()
		return nil, nil, fmt.Errorf("bind the track to the data channel: %w", err)
	}
	out.ready = func() bool { return f.open.Load() && !f.closed.Load() }
	dc.OnOpen(func() {
		f.open.Store(true)
		t.startOutlet(out) // from the last keyframe, or the gate holds the feed until a new one
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if m.IsString && string(m.Data) == dcKeyframeRequest {
			f.mu.Lock()
			f.needKey = true
			f.mu.Unlock()
			t.requestKeyframe()
		}
	})
	dc.OnClose(func() { f.closed.Store(true) })
	return f, out, nil
}

// close stops the feed and closes its data channel.
func (f *auFeed) close() {
	if f.closed.Swap(true) {
		return
	}
	f.local.Unbind(f.ctx)
	f.dc.Close()
}

// WriteRTP takes one forwarded packet (webrtc.TrackLocalWriter).
func (f *auFeed) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if f.closed.Load() {
		return 0, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seqSeen {
		d := int16(h.SequenceNumber - f.lastSeq)
		if d <= 0 {
			return len(payload), nil // a duplicate or a late retransmission
		}
		if d > 1 {
			f.lost()
		}
	}
	f.seqSeen, f.lastSeq = true, h.SequenceNumber
	if f.inAU && h.Timestamp != f.auTS {
		f.broken = true // the previous unit never ended (its last packet was lost)
		f.lost()
		f.au, f.broken = f.au[:0], false
	}
	f.inAU, f.auTS = true, h.Timestamp
	nals, err := f.depack.Unmarshal(payload)
	if err != nil {
		f.broken = true
	} else {
		f.au = append(f.au, nals...)
	}
	if h.Marker {
		f.emit()
		f.au, f.inAU, f.broken = f.au[:0], false, false
	}
	return len(payload), nil
}

// Write takes one whole RTP packet (webrtc.TrackLocalWriter).
func (f *auFeed) Write(b []byte) (int, error) {
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		return 0, err
	}
	return f.WriteRTP(&p.Header, p.Payload)
}

// lost notes that packets were lost: the decoder needs a keyframe.
func (f *auFeed) lost() {
	f.broken = true
	f.depack = codecs.H264Packet{} // drop a half-assembled FU-A
	if !f.needKey {
		f.needKey = true
		f.t.requestKeyframe()
	}
}

// emit sends the access unit assembled so far, unless it is damaged or cannot be decoded.
func (f *auFeed) emit() {
	key := h264.IsKeyframe(f.au)
	switch {
	case f.broken || len(f.au) == 0:
		return
	case f.needKey && !key:
		return
	case f.dc.BufferedAmount() > dcMaxBuffered:
		f.needKey = true
		f.t.requestKeyframe()
		return
	}
	f.needKey = false
	f.number++
	flags := byte(0)
	if key {
		flags |= dcFlagKey
	}
	msg := make([]byte, dcHeader+min(len(f.au), dcFragment-dcHeader))
	for i, off := 0, 0; off < len(f.au); i++ {
		n := min(len(f.au)-off, dcFragment-dcHeader)
		fl := flags
		if off == 0 {
			fl |= dcFlagFirst
		}
		if off+n == len(f.au) {
			fl |= dcFlagLast
		}
		msg = msg[:dcHeader+n]
		msg[0], msg[1] = dcVersion, fl
		binary.BigEndian.PutUint32(msg[2:], f.number)
		binary.BigEndian.PutUint32(msg[6:], f.auTS)
		binary.BigEndian.PutUint16(msg[10:], uint16(i))
		copy(msg[dcHeader:], f.au[off:off+n])
		if err := f.dc.Send(msg); err != nil {
			f.needKey = true
			return
		}
		off += n
	}
	f.sent.Add(1)
}

// auContext binds a subscriber's TrackLocalStaticRTP to its auFeed (webrtc.TrackLocalContext).
type auContext struct {
	feed  *auFeed
	codec webrtc.RTPCodecParameters
	id    string
}

func (c *auContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{c.codec}
}
func (c *auContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c *auContext) SSRC() webrtc.SSRC                                      { return 1 }
func (c *auContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c *auContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c *auContext) WriteStream() webrtc.TrackLocalWriter                   { return c.feed }
func (c *auContext) ID() string                                             { return c.id }
func (c *auContext) RTCPReader() interceptor.RTCPReader                     { return nil }

// subscribeDataChannel subscribes the session to t, a video track, over a data channel of its
// subscribe connection pc, and returns the channel's label.
func (s *session) subscribeDataChannel(pc *webrtc.PeerConnection, t *track, key subKey) (string, error) {
	if mime := t.remote.Codec().MimeType; !isH264(mime) {
		return "", rtc.Errorf(rtc.CodeCodecNotSupported, "subscribe: a data channel carries H.264 only; user %d's video is %s", key.uid, mime)
	}
	f, out, err := newAUFeed(pc, t)
	if err != nil {
		return "", rtc.Errorf(rtc.CodeInternal, "subscribe: %v", err)
	}
	s.mu.Lock()
	s.subs[key] = &subscription{track: t, feed: f}
	s.mu.Unlock()
	t.addSubscriber(s, out)
	// The first data channel adds an application m-line: the subscriber must see it.
	if err := s.renegotiate(); err != nil {
		s.dropSubscription(key)
		return "", err
	}
	return f.dc.Label(), nil
}

func isH264(mime string) bool { return strings.EqualFold(mime, webrtc.MimeTypeH264) }
