package sfu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// keyframeGap throttles keyframe requests relayed to a publisher.
const keyframeGap = 100 * time.Millisecond

// track is one published stream and its fan-out: packets read from the publisher are written
// once to a TrackLocalStaticRTP bound to every subscriber's connection (pion rewrites SSRC and
// payload type per subscriber; its interceptors answer NACKs and send sender reports).
type track struct {
	svc    *Service
	pc     *webrtc.PeerConnection // the publisher's
	remote *webrtc.TrackRemote
	local  *webrtc.TrackLocalStaticRTP
	kind   string

	mu    sync.Mutex
	subs  map[*session]struct{}
	done  chan struct{}
	close func()

	lastKeyframeReq atomic.Int64
}

func newTrack(svc *Service, pc *webrtc.PeerConnection, remote *webrtc.TrackRemote, uid uint32) (*track, error) {
	kind := remote.Kind().String()
	local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, kind, fmt.Sprintf("u%d", uid))
	if err != nil {
		return nil, fmt.Errorf("new local track: %w", err)
	}
	t := &track{svc: svc, pc: pc, remote: remote, local: local, kind: kind,
		subs: map[*session]struct{}{}, done: make(chan struct{})}
	var once sync.Once
	t.close = func() { once.Do(func() { close(t.done) }) }
	return t, nil
}

// forward copies the publisher's packets to the subscribers until the stream ends, the track
// is unpublished, or ctx ends.
func (t *track) forward(ctx context.Context) {
	buf := make([]byte, 1500)
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
		if _, err := t.local.Write(buf[:n]); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			t.svc.log.Debug("forward packet", "kind", t.kind, "err", err)
		}
		t.svc.forwardedPackets.Add(1)
		t.svc.forwardedBytes.Add(uint64(n))
	}
}

func (t *track) addSubscriber(s *session) {
	t.mu.Lock()
	t.subs[s] = struct{}{}
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
	if err := t.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.remote.SSRC())}}); err != nil {
		t.svc.log.Debug("send PLI", "err", err)
	}
}

// wantsKeyframe reports whether RTCP from a subscriber asks for a keyframe.
func wantsKeyframe(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}
