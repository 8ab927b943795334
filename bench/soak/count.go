package main

import "sync"

// seqCount counts one received RTP stream by its sequence numbers: how many distinct packets
// came and how far the sender's numbering went, so that a minute's delivery is the packets
// received in it over the numbers the sender used in it. The hub keeps a publisher's
// numbering (an offset at most), so a packet lost anywhere on the way is a gap here.
type seqCount struct {
	mu      sync.Mutex
	started bool
	first   int64  // extended number of the first packet
	high    int64  // extended number of the newest packet
	seen    uint64 // bit i: packet high-i arrived (duplicates and NACK resends count once)
	recv    int64
}

func (s *seqCount) add(seq uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started, s.first, s.high, s.seen, s.recv = true, int64(seq), int64(seq), 1, 1
		return
	}
	n := s.high + int64(int16(seq-uint16(s.high)))
	switch {
	case n > s.high:
		if shift := n - s.high; shift < 64 {
			s.seen = s.seen<<shift | 1
		} else {
			s.seen = 1
		}
		s.high = n
		s.recv++
	case s.high-n < 64 && s.seen&(1<<(s.high-n)) == 0:
		s.seen |= 1 << (s.high - n)
		s.recv++
	}
}

// snapshot returns the packets received so far and the sender's newest number (0, -1 before
// the first packet: nothing expected yet).
func (s *seqCount) snapshot() (recv, high, first int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recv, s.high, s.first, s.started
}

// tally is one kind's delivery over an interval.
type tally struct{ recv, expected int64 }

func (t *tally) add(o tally) { t.recv += o.recv; t.expected += o.expected }

func (t tally) percent() float64 {
	if t.expected == 0 {
		return 0
	}
	return 100 * float64(t.recv) / float64(t.expected)
}

// viewerMark is where a viewer's counts stood at the last minute's end (high -1: nothing yet).
type viewerMark struct{ recv, high int64 }

// minute returns a channel's delivery of one kind since the last call. Each viewer is held to
// its own numbers (the packets it received over how far the sender's numbering went in what
// it received, both read at the same moment, so packets in flight at the minute's end do not
// count), unless it fell behind the furthest viewer by more than a tenth of the minute's
// numbers: a viewer that stalled or whose session died is held to the publisher's numbers,
// so it counts as loss, not as a smaller audience. pub is the furthest number at the last
// call (-1: none yet).
func minute(counts []*seqCount, marks []viewerMark, pub *int64) (t tally) {
	recv, high, ok := make([]int64, len(counts)), make([]int64, len(counts)), make([]bool, len(counts))
	top, from := int64(-1), *pub
	for i, c := range counts {
		r, h, first, started := c.snapshot()
		recv[i], high[i], ok[i] = r, h, started
		if !started {
			continue
		}
		if marks[i].high < 0 {
			marks[i].high = first - 1 // a viewer's numbers start at its first packet
		}
		top = max(top, h)
		if *pub < 0 && (from < 0 || marks[i].high < from) {
			from = marks[i].high
		}
	}
	if top < 0 { // nothing has reached any viewer yet
		return t
	}
	span := top - from
	for i := range counts {
		t.recv += recv[i] - marks[i].recv
		own := int64(0)
		if ok[i] {
			own = high[i] - marks[i].high
		}
		if own*10 < span*9 {
			own = span
		}
		t.expected += own
		marks[i].recv = recv[i]
		if ok[i] {
			marks[i].high = high[i]
		}
	}
	*pub = top
	return t
}
