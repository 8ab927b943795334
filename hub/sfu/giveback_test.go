package sfu

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestGiveBackPolicy: memory is given back once the users fell to half their peak by at
// least minDrop and nobody left for quiet; a wave of leaves gives one call, a small drop
// none, and two waves closer than every are spaced by every.
func TestGiveBackPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		var at []time.Duration
		start := time.Now()
		g := newGiveBack(5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
		g.free = func() { calls.Add(1); at = append(at, time.Since(start)) }
		defer g.close()

		// 100 join, 40 leave: 60 > 100/2, nothing to do.
		inOut(g, 100, 40)
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := calls.Load(); n != 0 {
			t.Fatalf("%d give-backs after a drop to 60 of 100", n)
		}
		// 55 more leave, one every 100 ms: one give-back, 5 s after the last.
		start = time.Now()
		for range 55 {
			time.Sleep(100 * time.Millisecond)
			g.left()
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := calls.Load(); n != 1 || at[0] != 5500*time.Millisecond+5*time.Second {
			t.Fatalf("after a wave of 55 leaves: %d give-backs at %v, want 1 at 10.5s", n, at)
		}
		// The peak is now 5: a new wave of 100 in and out gives back 5 s after it; a third
		// wave right after that waits for every (30 s) since the second give-back.
		wave := func() { inOut(g, 100, 100) }
		start, at = time.Now(), nil
		wave()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		wave()
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if n := calls.Load(); n != 3 || at[0] != 5*time.Second || at[1] != 35*time.Second {
			t.Fatalf("second and third waves: %d give-backs in all, at %v, want 3 (the last two at 5s and 35s)", n, at)
		}
		// Fewer than minDrop users leaving never gives back, even to zero.
		g2 := newGiveBack(time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
		var calls2 atomic.Int32
		g2.free = func() { calls2.Add(1) }
		inOut(g2, 9, 9)
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := calls2.Load(); n != 0 {
			t.Fatalf("%d give-backs after 9 users left", n)
		}
		g2.close()
		if newGiveBack(-1, nil) != nil {
			t.Fatal("a negative quiet must turn the policy off")
		}
		var off *giveBack // every method is a no-op on nil
		off.joined()
		off.left()
		off.close()
	})
}

// inOut has join users join, then leave of them leave.
func inOut(g *giveBack, join, leave int) {
	for range join {
		g.joined()
	}
	for range leave {
		g.left()
	}
}
