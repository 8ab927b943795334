package sfu

import (
	"errors"
	"io"
	"time"

	"github.com/pion/rtp"
)

// A new video subscriber starts from the publisher's last keyframe at once (a warm start)
// when that keyframe is at most Options.WarmStartAge old, instead of asking for a new one and
// waiting a frame or more for it. The packets since that keyframe reach the subscriber in one
// burst, so the age is also the most a warm start can add to the subscriber's delay at first:
// the default, 100 ms, is three frames at 30 fps. It matters most right after a device starts
// publishing (its first keyframe is fresh when the viewers subscribe).

// keyStart is where the publisher's last whole keyframe began, as its track's gate saw it.
type keyStart struct {
	seq uint16
	at  time.Time
	ok  bool
}

// startSubscriber gives the subscriber s of this track a keyframe: the last one at once when s
// still waits for its first, that keyframe is recent enough and every packet since is still
// cached; else (and for a subscriber whose path was lost) by asking the publisher for a new one.
func (t *track) startSubscriber(s *session) {
	t.mu.Lock()
	o := t.subs[s]
	t.mu.Unlock()
	t.startOutlet(o)
}

// startOutlet is startSubscriber for an outlet known already (a WHEP slot, a data-channel feed).
func (t *track) startOutlet(o *outlet) {
	if o != nil && t.warmStart(o) {
		return
	}
	t.requestKeyframeNow()
}

// warmStart sends o the packets from the publisher's last keyframe up to the newest one, and
// opens it, if o is waiting and can receive, that keyframe is at most warmStartAge old, and the
// cache holds every packet since. It reports whether it started o. An outlet started before
// is not waiting: it gets nothing here (it asks for a keyframe when it lost packets).
//
// It runs under t.fwd, so no packet is forwarded meanwhile: o gets the cached packets and then
// the live ones, in order and without a gap.
func (t *track) warmStart(o *outlet) bool {
	if t.gate == nil || t.cache == nil {
		return false
	}
	t.fwd.Lock()
	defer t.fwd.Unlock()
	k := t.lastKey
	if !o.waiting.Load() || !k.ok || time.Since(k.at) > t.svc.opts.WarmStartAge || !o.canReceive() {
		return false
	}
	n := int(t.newest-k.seq) + 1 // uint16 arithmetic: the sequence numbers wrap
	if n > len(t.cache.pkts) {
		return false
	}
	pkts := make([]*rtp.Packet, 0, n)
	for i := range n {
		p := t.cache.get(k.seq + uint16(i))
		if p == nil {
			return false
		}
		pkts = append(pkts, p)
	}
	o.waiting.Store(false)
	for _, p := range pkts {
		if err := t.write(o, p); err != nil {
			break
		}
	}
	t.svc.warmStarts.Add(1)
	return true
}

// write sends one packet to one outlet (its feed, or its local track).
func (t *track) write(o *outlet, pkt *rtp.Packet) error {
	var err error
	switch {
	case o.sink != nil:
		err = o.sink(pkt)
	case o.feed != nil:
		err = o.feed.write(pkt)
	default:
		err = o.local.WriteRTP(pkt)
	}
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		t.svc.log.Debug("forward packet", "kind", t.kind, "err", err)
		return err
	}
	return nil
}
