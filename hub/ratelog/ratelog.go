// Package ratelog bounds the log lines that noise from one source can write: a refused login,
// a garbage message or a flood of them should leave a few lines a second per remote address
// (with a count of the lines held back), not one line per packet.
//
// A Limiter keeps a token bucket per key (usually the remote address); it holds at most
// maxKeys buckets (and one shared overflow bucket), so a spray of source addresses cannot grow it without bound: when full, the
// idle buckets are dropped, and if none is idle every further key shares one bucket.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

const maxKeys = 4096

// overflowKey is the bucket shared by new keys while the table is full of busy ones.
const overflowKey = "\x00overflow"

// Limiter lets burst lines per key through at once, then one per every.
type Limiter struct {
	burst int
	every time.Duration
	now   func() time.Time

	mu        sync.Mutex
	keys      map[string]*bucket
	lastPrune time.Time

	suppressed atomic.Uint64
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// New returns a Limiter of burst lines per key, refilled at one line per every.
func New(burst int, every time.Duration) *Limiter {
	if burst < 1 {
		burst = 1
	}
	if every <= 0 {
		every = time.Second
	}
	return &Limiter{burst: burst, every: every, now: time.Now, keys: map[string]*bucket{}}
}

// Allow reports whether a line for key may be written now and, when it may, how many lines
// for key were held back since the last one written.
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[key]
	if b == nil {
		if len(l.keys) >= maxKeys && now.Sub(l.lastPrune) >= l.every {
			l.prune(now)
		}
		if len(l.keys) >= maxKeys {
			key = overflowKey
			b = l.keys[key]
		}
		if b == nil {
			b = &bucket{tokens: float64(l.burst), last: now}
			l.keys[key] = b
		}
	}
	b.tokens += float64(now.Sub(b.last)) / float64(l.every)
	if b.tokens > float64(l.burst) {
		b.tokens = float64(l.burst)
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		l.suppressed.Add(1)
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

// prune drops the buckets that have refilled completely (their key has been quiet), with
// l.mu held. Their suppressed counts are lost from the lines but stay in Suppressed.
func (l *Limiter) prune(now time.Time) {
	l.lastPrune = now
	full := time.Duration(l.burst) * l.every
	for k, b := range l.keys {
		if now.Sub(b.last) >= full {
			delete(l.keys, k)
		}
	}
}

// Log writes one line at level through the limit for key, adding "suppressed" (the lines
// held back before it) when there were any.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, key, msg string, args ...any) {
	if !log.Enabled(context.Background(), level) {
		return
	}
	ok, n := l.Allow(key)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, args...)
}

// Suppressed is the number of lines held back so far, for metrics.
func (l *Limiter) Suppressed() uint64 { return l.suppressed.Load() }
