package sfu

import "time"

// bucket is a token bucket for one session's read loop (not safe for concurrent use): burst
// tokens, refilled at rate per second.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take spends one token if there is one.
func (b *bucket) take(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// isOperation reports whether a message type is a request that costs the hub work (a
// negotiation, a gathering, a token check), limited more tightly than messages in general.
func isOperation(typ string) bool {
	switch typ {
	case "join", "publish", "subscribe", "unsubscribe", "renew", "restart":
		return true
	}
	return false
}
