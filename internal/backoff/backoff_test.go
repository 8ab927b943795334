package backoff

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestStep(t *testing.T) {
	for _, c := range []struct {
		first, max time.Duration
		n          int
		want       time.Duration
	}{
		{500 * time.Millisecond, 30 * time.Second, 0, 500 * time.Millisecond},
		{500 * time.Millisecond, 30 * time.Second, 1, time.Second},
		{500 * time.Millisecond, 30 * time.Second, 5, 16 * time.Second},
		{500 * time.Millisecond, 30 * time.Second, 6, 30 * time.Second},
		{500 * time.Millisecond, 30 * time.Second, 1000, 30 * time.Second}, // no overflow
		{100 * time.Millisecond, 5 * time.Second, 3, 800 * time.Millisecond},
		{time.Second, time.Second, 4, time.Second},
		{0, time.Second, 3, 0},
	} {
		if got := Step(c.first, c.max, c.n); got != c.want {
			t.Errorf("Step(%v, %v, %d) = %v, want %v", c.first, c.max, c.n, got, c.want)
		}
	}
}

// Every delay lies in the upper half of its step, never above Max, and the delays of many
// loops that failed at the same moment are spread out (the point of the jitter).
func TestDelaysBoundedAndSpread(t *testing.T) {
	const first, max = 500 * time.Millisecond, 30 * time.Second
	for n := range 12 {
		step := Step(first, max, n)
		seen := map[time.Duration]bool{}
		lo, hi := step, time.Duration(0)
		for range 1000 {
			d := Delay(first, max, n)
			if d < step/2 || d > step || d > max {
				t.Fatalf("n=%d: delay %v outside [%v, %v]", n, d, step/2, step)
			}
			seen[d] = true
			lo, hi = min(lo, d), maxDur(hi, d)
		}
		// 1000 draws from a range of ≥ 250 ms in nanoseconds: all distinct in practice, and
		// covering most of the half step.
		if len(seen) < 990 || hi-lo < step/2*8/10 {
			t.Errorf("n=%d: %d distinct delays spanning %v of %v: not spread", n, len(seen), hi-lo, step/2)
		}
	}
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

func TestNextGrowsCapsAndResets(t *testing.T) {
	b := New(100*time.Millisecond, 5*time.Second)
	for i := range 20 {
		step := Step(b.First, b.Max, i)
		if d := b.Next(); d < step/2 || d > step {
			t.Fatalf("failure %d: %v outside [%v, %v]", i, d, step/2, step)
		}
	}
	if b.Failures() != 6 { // 100ms·2⁶ = 6.4 s ≥ 5 s: counting stopped at the cap
		t.Errorf("Failures() = %d after 20 at the cap, want 6", b.Failures())
	}
	if d := b.Next(); d < 2500*time.Millisecond {
		t.Errorf("at the cap: %v, want ≥ 2.5 s", d)
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after Reset: %v, want ≤ 100 ms", d)
	}
}

// Wait sleeps exactly the delay it reports, in a synctest bubble's fake time.
func TestWaitSleepsTheDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(time.Second, time.Minute)
		for i := range 8 {
			start := time.Now()
			d, err := b.Wait(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if slept := time.Since(start); slept != d {
				t.Fatalf("wait %d: slept %v, reported %v", i, slept, d)
			}
			if step := Step(time.Second, time.Minute, i); d < step/2 || d > step {
				t.Fatalf("wait %d: %v outside [%v, %v]", i, d, step/2, step)
			}
		}
	})
}

// A cancelled context or a closed stop channel ends the wait at once, whatever the delay.
func TestWaitEndsEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(time.Hour, time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(3*time.Second, cancel)
		start := time.Now()
		if _, err := b.Wait(ctx, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait after cancel: %v", err)
		}
		if took := time.Since(start); took != 3*time.Second {
			t.Fatalf("cancelled wait took %v, want 3s", took)
		}
		stop := make(chan struct{})
		time.AfterFunc(2*time.Second, func() { close(stop) })
		start = time.Now()
		if _, err := b.Wait(context.Background(), stop); !errors.Is(err, ErrStopped) {
			t.Fatalf("Wait after stop: %v", err)
		}
		if took := time.Since(start); took != 2*time.Second {
			t.Fatalf("stopped wait took %v, want 2s", took)
		}
		// An already cancelled context does not sleep at all.
		start = time.Now()
		if err := Sleep(ctx, time.Hour, nil); !errors.Is(err, context.Canceled) || time.Since(start) != 0 {
			t.Fatalf("Sleep on a done context: %v after %v", err, time.Since(start))
		}
	})
}
