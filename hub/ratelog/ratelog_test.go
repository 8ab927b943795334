package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := New(3, time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	allowed := 0
	for range 100 {
		if ok, _ := l.Allow("10.0.0.1"); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("allowed %d of a burst, want 3", allowed)
	}
	if ok, _ := l.Allow("10.0.0.2"); !ok {
		t.Fatal("another address was held back by the first one's flood")
	}
	now = now.Add(time.Second)
	ok, n := l.Allow("10.0.0.1")
	if !ok || n != 97 {
		t.Fatalf("after a second: ok=%v suppressed=%d, want true 97", ok, n)
	}
	if got := l.Suppressed(); got != 97 {
		t.Fatalf("Suppressed %d, want 97", got)
	}
}

// TestLimiterBounded: a spray of source addresses keeps the table bounded and still limits.
func TestLimiterBounded(t *testing.T) {
	l := New(2, time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	allowed := 0
	for i := range 3 * maxKeys {
		if ok, _ := l.Allow(fmt.Sprint("addr", i)); ok {
			allowed++
		}
	}
	if len(l.keys) > maxKeys+1 {
		t.Fatalf("%d keys kept, want at most %d", len(l.keys), maxKeys)
	}
	if allowed > maxKeys+2 {
		t.Fatalf("%d lines allowed from a spray, want at most %d", allowed, maxKeys+2)
	}
	now = now.Add(time.Minute) // everyone quiet: the table is pruned for new keys
	if ok, _ := l.Allow("new"); !ok {
		t.Fatal("a new key after a quiet minute was held back")
	}
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := New(2, time.Hour)
	for range 50 {
		l.Log(log, slog.LevelInfo, "1.2.3.4", "bad message", "n", 1)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 2 {
		t.Fatalf("%d lines written, want 2:\n%s", lines, buf.String())
	}
	l.Log(log, slog.LevelDebug, "1.2.3.4", "not enabled") // below the level: not counted either
	if l.Suppressed() != 48 {
		t.Fatalf("Suppressed %d, want 48", l.Suppressed())
	}
}
