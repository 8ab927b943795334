package rtctest

import (
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// LossyLink is an interceptor that drops a fraction of the video packets a process sends,
// after everything else in its chain (NACK caches included) and before SRTP: a lossy network
// on the way out. Register it first (rtc.APIOptions.Interceptors) so that it sits closest to
// the network. It counts what it dropped and the packets sent more than once (answers to
// NACKs).
type LossyLink struct {
	interceptor.NoOp
	Rate    float64 // the fraction of video packets dropped
	dropped atomic.Int64

	mu     sync.Mutex
	resent int
	sent   map[uint32]map[uint16]bool // per SSRC
}

// NewInterceptor makes LossyLink its own factory: one link for every connection of the API.
func (l *LossyLink) NewInterceptor(string) (interceptor.Interceptor, error) { return l, nil }

// BindLocalStream drops video packets at Rate.
func (l *LossyLink) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if !strings.HasPrefix(strings.ToLower(info.MimeType), "video") {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		l.mu.Lock()
		if l.sent == nil {
			l.sent = map[uint32]map[uint16]bool{}
		}
		seen := l.sent[h.SSRC]
		if seen == nil {
			seen = map[uint16]bool{}
			l.sent[h.SSRC] = seen
		}
		if seen[h.SequenceNumber] {
			l.resent++
		}
		seen[h.SequenceNumber] = true
		l.mu.Unlock()
		if rand.Float64() < l.Rate {
			l.dropped.Add(1)
			return len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

// Dropped is how many packets the link dropped.
func (l *LossyLink) Dropped() int64 { return l.dropped.Load() }

// Resent is how many packets were sent again (a sequence number seen before on its SSRC).
func (l *LossyLink) Resent() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.resent
}
