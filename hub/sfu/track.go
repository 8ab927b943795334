package sfu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// keyframeGap throttles keyframe requests relayed to a publisher.
const keyframeGap = 100 * time.Millisecond

// track is one published stream and its fan-out. Each subscriber has its own
// TrackLocalStaticRTP (pion rewrites SSRC and payload type for its connection, and its
// interceptors answer that subscriber's NACKs from a packet cache and send sender reports),
// so that a new video subscriber can be held back until a keyframe starts: its first frame
// is then always decodable.
type track struct {
	svc    *Service
	remote source
	pli    func() error // asks the publisher (or the hub it is relayed from) for a keyframe
	kind   string
	uid    uint32
	gate   *keyGate     // nil: every packet may start a subscriber (audio, other codecs)
	cache  *packetCache // video: the last packets, to answer subscribers' NACKs

	mu    sync.Mutex
	subs  map[*session]*outlet
	done  chan struct{}
	close func()

	lastKeyframeReq atomic.Int64

	// fwd is held while one packet is forwarded, and by a warm start (warmstart.go), so
	// that a new subscriber gets the cached packets and then the live ones in order.
	fwd     sync.Mutex
	lastKey keyStart // where the last whole keyframe began
	newest  uint16   // the sequence number of the last packet forwarded (set with lastKey)
}

// outlet is the track as one subscriber receives it.
type outlet struct {
	local *boundTrack
	// feed, when set, takes the packets instead of local: a WHEP viewer's slot (external.go).
	feed *slotFeed
	// sink, when set, takes the packets instead: a relay's tap (relay.go). It must not
	// change them (the fan-out workers share them).
	sink func(*rtp.Packet) error
	// ready, when set, reports whether what is written now reaches the subscriber (its track
	// bound and its connection up); a waiting outlet opens only when it does.
	ready func() bool
	// waiting: nothing is sent until a packet that starts a keyframe.
	waiting atomic.Bool
}

// canReceive reports whether a packet written now would reach the subscriber.
func (o *outlet) canReceive() bool {
	switch {
	case o.ready != nil:
		return o.ready()
	case o.feed != nil:
		return o.feed.ready()
	case o.local != nil:
		return o.local.bound()
	}
	return true
}

// source is where a track's packets come from: the publisher's TrackRemote on its publish
// connection, or for a relayed channel (relay.go) the same track as this hub receives it from
// the channel's hub.
type source interface {
	Read(b []byte) (int, interceptor.Attributes, error)
	Codec() webrtc.RTPCodecParameters
	Kind() webrtc.RTPCodecType
	SSRC() webrtc.SSRC
}

// publisherPLI asks a publisher for a keyframe on its publish connection pc.
func publisherPLI(pc *webrtc.PeerConnection, remote source) func() error {
	return func() error {
		return pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}})
	}
}

func newTrack(svc *Service, remote source, pli func() error, uid uint32) (*track, error) {
	t := &track{svc: svc, remote: remote, pli: pli, kind: remote.Kind().String(), uid: uid,
		subs: map[*session]*outlet{}, done: make(chan struct{})}
	switch strings.ToLower(remote.Codec().MimeType) {
	case strings.ToLower(webrtc.MimeTypeH264):
		t.gate = &keyGate{h264: true}
	case strings.ToLower(webrtc.MimeTypeVP8):
		t.gate = &keyGate{}
	}
	if t.kind == "video" {
		t.cache = &packetCache{}
	}
	var once sync.Once
	t.close = func() { once.Do(func() { close(t.done) }) }
	return t, nil
}

// newOutlet makes the subscriber side of the track.
func (t *track) newOutlet() (*outlet, error) {
	local, err := webrtc.NewTrackLocalStaticRTP(t.remote.Codec().RTPCodecCapability, t.kind, fmt.Sprintf("u%d", t.uid))
	if err != nil {
		return nil, fmt.Errorf("new local track: %w", err)
	}
	o := &outlet{local: &boundTrack{TrackLocalStaticRTP: local}}
	o.waiting.Store(t.gate != nil)
	return o, nil
}

// forward copies the publisher's packets to the subscribers until the stream ends, the track
// is unpublished, or ctx ends.
func (t *track) forward(ctx context.Context) {
	buf := make([]byte, 1500)
	var outlets []*outlet
	fan := &fanout{t: t}
	defer fan.stop()
	for {
		select {
		case <-t.done:
			return
		case <-ctx.Done():
			return
		default:
		}
		n, _, err := t.remote.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.svc.log.Debug("publisher stream ended", "kind", t.kind, "err", err)
			}
			return
		}
		// Each packet has its own memory: the cache keeps it and the fan-out workers share it.
		pkt := &rtp.Packet{}
		if err := pkt.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			continue
		}
		t.svc.forwardedPackets.Add(1)
		t.svc.forwardedBytes.Add(uint64(n))
		t.fwd.Lock()
		outlets = outlets[:0]
		t.mu.Lock()
		for _, o := range t.subs {
			outlets = append(outlets, o)
		}
		t.mu.Unlock()
		// The gate sees every packet, so that it knows where access units begin.
		start := t.gate != nil && t.gate.step(pkt)
		// The publisher's header extensions are numbered for its own connection, not the
		// subscribers'; pion adds each subscriber's own. Dropping them also means no two
		// fan-out workers ever write to one extension array.
		pkt.Header.Extension, pkt.Header.Extensions = false, nil
		if t.cache != nil {
			t.cache.put(pkt)
		}
		if start {
			t.lastKey = keyStart{seq: pkt.SequenceNumber, at: time.Now(), ok: true}
		}
		t.newest = pkt.SequenceNumber
		fan.send(pkt, outlets, start)
		t.fwd.Unlock()
	}
}

func (t *track) addSubscriber(s *session, o *outlet) {
	t.mu.Lock()
	t.subs[s] = o
	t.mu.Unlock()
}

func (t *track) removeSubscriber(s *session) {
	t.mu.Lock()
	delete(t.subs, s)
	t.mu.Unlock()
}

func (t *track) subscribers() []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*session, 0, len(t.subs))
	for s := range t.subs {
		out = append(out, s)
	}
	return out
}

// requestKeyframe relays a subscriber's PLI/FIR to the publisher, at most once per keyframeGap.
func (t *track) requestKeyframe() {
	now := time.Now().UnixNano()
	last := t.lastKeyframeReq.Load()
	if now-last < int64(keyframeGap) || !t.lastKeyframeReq.CompareAndSwap(last, now) {
		return
	}
	t.sendPLI()
}

// requestKeyframeNow asks for a keyframe for a subscriber that just started.
func (t *track) requestKeyframeNow() {
	t.lastKeyframeReq.Store(time.Now().UnixNano())
	t.sendPLI()
}

func (t *track) sendPLI() {
	if t.kind != "video" {
		return
	}
	if err := t.pli(); err != nil {
		t.svc.log.Debug("send PLI", "err", err)
	}
}

// vp8KeyframeStart reports whether a VP8 RTP payload (RFC 7741) begins a key frame.
func vp8KeyframeStart(p []byte) bool {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 { // S bit, partition 0
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte with I, L, T, K flags
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture id, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/KEYIDX
			i++
		}
	}
	return len(p) > i && p[i]&0x01 == 0 // P bit 0: key frame
}
