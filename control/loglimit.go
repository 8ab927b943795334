package control

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logLimit bounds how many lines of one kind a flood can write: a burst of
// burst lines, then one every every. The lines it holds back are counted,
// and the next line let through carries the count ("suppressed"), so a
// flood of garbage commands writes a few lines a second, not thousands.
type logLimit struct {
	every time.Duration
	burst int

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

func newLogLimit(burst int, every time.Duration) *logLimit {
	return &logLimit{every: every, burst: burst, tokens: float64(burst)}
}

// allow reports whether a line may be written now and, if so, how many
// were held back since the last one written.
func (l *logLimit) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens += float64(now.Sub(l.last)) / float64(l.every)
		if l.tokens > float64(l.burst) {
			l.tokens = float64(l.burst)
		}
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// log writes one line through the limit, adding "suppressed" when lines
// were held back before it.
func (l *logLimit) log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	ok, n := l.allow(time.Now())
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, args...)
}
