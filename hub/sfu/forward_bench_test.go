package sfu

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The per-packet forwarding mutex (track.fwd, taken by track.forward for every packet and by a
// warm start for the burst it sends) in proportion: the lock pair alone, uncontended and while
// warm starts run beside the forwarding, against the rest of the forwarding goroutine's work
// for one packet (fan-out to N outlets whose tracks are not bound, so without the SRTP and the
// system call that a real viewer's write adds, ≈ 10 µs per packet per viewer). Figures in
// docs/performance.md ("The warm start's forwarding mutex").

// benchTrack is an H.264 track with n open outlets (unbound local tracks: writes go nowhere).
func benchTrack(b *testing.B, n int) (*track, []*outlet) {
	b.Helper()
	svc := &Service{opts: Options{WarmStartAge: time.Hour}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t := &track{svc: svc, kind: "video", gate: &keyGate{h264: true}, cache: &packetCache{},
		subs: map[*session]*outlet{}, done: make(chan struct{})}
	outs := make([]*outlet, n)
	for i := range outs {
		local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "bench")
		if err != nil {
			b.Fatal(err)
		}
		outs[i] = &outlet{local: &boundTrack{TrackLocalStaticRTP: local}, ready: func() bool { return true }}
		t.subs[&session{}] = outs[i]
	}
	return t, outs
}

// benchPacket is a P-frame packet of 1200 bytes.
func benchPacket(seq uint16) *rtp.Packet {
	payload := make([]byte, 1200)
	payload[0] = 0x41 // a non-IDR slice
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload}
}

// BenchmarkForwardLock: the lock pair every forwarded packet pays.
func BenchmarkForwardLock(b *testing.B) {
	b.Run("uncontended", func(b *testing.B) {
		t, _ := benchTrack(b, 0)
		for b.Loop() {
			t.fwd.Lock()
			t.fwd.Unlock() //nolint:staticcheck // the empty critical section is what is measured
		}
	})
	// A warm start every millisecond (a thousand joins a second) to one outlet from a
	// keyframe of 10 packets and 5 after it, beside the forwarding's lock pairs.
	b.Run("warm_start_every_ms", func(b *testing.B) {
		t, outs := benchTrack(b, 1)
		fillCache(t, 15)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					outs[0].waiting.Store(true)
					t.warmStart(outs[0])
				}
			}
		})
		for b.Loop() {
			t.fwd.Lock()
			t.fwd.Unlock() //nolint:staticcheck
		}
		close(stop)
		wg.Wait()
	})
}

// fillCache records a keyframe start and n packets from it, as forward does.
func fillCache(t *track, n int) {
	for i := range n {
		t.cache.put(benchPacket(uint16(i)))
	}
	t.lastKey = keyStart{seq: 0, at: time.Now(), ok: true}
	t.newest = uint16(n - 1)
}

// BenchmarkForwardDeliver: one packet to N outlets through the track's fan-out (what the
// forwarding goroutine does under the lock), without the network writes.
func BenchmarkForwardDeliver(b *testing.B) {
	for _, n := range []int{1, 10, 100, 200} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) {
			t, outs := benchTrack(b, n)
			fan := &fanout{t: t}
			defer fan.stop()
			pkt := benchPacket(1)
			for b.Loop() {
				fan.send(pkt, outs, false)
			}
		})
	}
}

// BenchmarkWarmStart: how long a warm start holds the lock (the forwarding waits that long),
// writing a cached keyframe and what followed it to one outlet, without the network writes.
func BenchmarkWarmStart(b *testing.B) {
	for _, n := range []int{15, 60} {
		b.Run(fmt.Sprintf("packets=%d", n), func(b *testing.B) {
			t, outs := benchTrack(b, 1)
			fillCache(t, n)
			for b.Loop() {
				outs[0].waiting.Store(true)
				if !t.warmStart(outs[0]) {
					b.Fatal("no warm start")
				}
			}
		})
	}
}
