package control

import (
	"testing"
	"time"
)

// TestLogLimit: a burst goes through, then one line per interval; the line after a pause
// carries the count of those held back.
func TestLogLimit(t *testing.T) {
	l := newLogLimit(3, 250*time.Millisecond)
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, {0, true, 0}, {0, true, 0}, // the burst
		{0, false, 0}, {10 * time.Millisecond, false, 0}, {100 * time.Millisecond, false, 0},
		{250 * time.Millisecond, true, 3}, // one token back: the 3 held back are reported
		{260 * time.Millisecond, false, 0},
		{time.Hour, true, 1}, {time.Hour, true, 0}, {time.Hour, true, 0}, // refilled to the burst, no more
		{time.Hour, false, 0},
	}
	for i, s := range steps {
		ok, n := l.allow(t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("step %d at %s: allow = %v, %d; want %v, %d", i, s.at, ok, n, s.ok, s.suppressed)
		}
	}
}
