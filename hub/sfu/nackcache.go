package sfu

import (
	"errors"
	"io"
	"sync"

	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtp"
)

// packetCache keeps a published video track's last packets, once for all its subscribers,
// to answer their NACKs: the hub's API has no per-stream NACK responder (rtc.APIOptions
// NoNACKResponder), which would keep a copy of every packet per subscriber. Subscribers see
// the publisher's sequence numbers (pion rewrites only SSRC and payload type), so a NACKed
// number is the cached packet's own; a WHEP slot maps its rewritten numbers back.
type packetCache struct {
	mu   sync.Mutex
	pkts [rtc.NACKCachePackets]*rtp.Packet
}

// put keeps p (which must not change afterwards), replacing the packet 256 numbers before it.
func (c *packetCache) put(p *rtp.Packet) {
	c.mu.Lock()
	c.pkts[int(p.SequenceNumber)%len(c.pkts)] = p
	c.mu.Unlock()
}

// get returns the packet with sequence number seq, if it is still kept.
func (c *packetCache) get(seq uint16) *rtp.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pkts[int(seq)%len(c.pkts)]; p != nil && p.SequenceNumber == seq {
		return p
	}
	return nil
}

// resendTo answers a subscriber's NACK for seqs from the track's cache.
func (t *track) resendTo(s *session, seqs []uint16) {
	if t.cache == nil || len(seqs) == 0 {
		return
	}
	t.mu.Lock()
	o := t.subs[s]
	t.mu.Unlock()
	if o == nil || o.local == nil || o.waiting.Load() {
		return
	}
	for _, seq := range seqs {
		p := t.cache.get(seq)
		if p == nil {
			t.svc.nackMissed.Add(1)
			continue
		}
		if err := o.local.WriteRTP(p); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			t.svc.log.Debug("resend packet", "kind", t.kind, "err", err)
			return
		}
		t.svc.nackResent.Add(1)
	}
}
