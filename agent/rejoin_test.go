package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/camagent/camagent/internal/backoff"
	"github.com/camagent/camagent/internal/deadaddr"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// dialErr is the error of a real signalling dial to addr.
func dialErr(t *testing.T, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: "http://" + addr, API: webrtc.NewAPI(), ConnectTimeout: 300 * time.Millisecond})
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded", addr)
	}
	return err
}

// TestRejoinStep: a hub that never answered (a blackholed listener) is retried on the quick
// step, for rejoinQuickFor; one that refused (a closed port) gets the long back-off.
func TestRejoinStep(t *testing.T) {
	silent, refused := dialErr(t, deadaddr.Blackhole(t)), dialErr(t, deadaddr.Closed(t))
	bo, quick := backoff.New(rejoinFirst, rejoinMax), backoff.New(rejoinQuick, rejoinQuick)
	var since time.Time
	t0 := time.Now()
	if got := rejoinStep(silent, t0, &since, bo, quick); got != quick {
		t.Fatalf("unanswered dial (%v): long back-off, want the quick step", silent)
	}
	if got := rejoinStep(silent, t0.Add(rejoinQuickFor-time.Second), &since, bo, quick); got != quick {
		t.Fatal("unanswered for less than rejoinQuickFor: long back-off, want the quick step")
	}
	if got := rejoinStep(silent, t0.Add(rejoinQuickFor), &since, bo, quick); got != bo {
		t.Fatal("unanswered for rejoinQuickFor: quick step, want the long back-off")
	}
	if got := rejoinStep(refused, t0.Add(rejoinQuickFor), &since, bo, quick); got != bo || !since.IsZero() {
		t.Fatalf("refused dial (%v): quick step or the silence kept, want the long back-off", refused)
	}
	if got := rejoinStep(silent, t0.Add(2*rejoinQuickFor), &since, bo, quick); got != quick {
		t.Fatal("a new silence after an answer: long back-off, want the quick step again")
	}
	for range 50 {
		if d := quick.Next(); d < rejoinQuick/2 || d > rejoinQuick {
			t.Fatalf("quick step %v, want within [%v, %v]", d, rejoinQuick/2, rejoinQuick)
		}
	}
}

// TestHolderDown: a join redirected to a hub out of reach is retried on the short step for
// rejoinSoonFor; any other failure ends the run.
func TestHolderDown(t *testing.T) {
	down := fmt.Errorf("%w (redirected there): %w", rtc.ErrHolderUnreachable, dialErr(t, deadaddr.Closed(t)))
	other := dialErr(t, deadaddr.Closed(t))
	var since time.Time
	t0 := time.Now()
	if !holderDown(down, t0, &since) || !holderDown(down, t0.Add(rejoinSoonFor-time.Second), &since) {
		t.Fatal("holder out of reach: not the short step")
	}
	if holderDown(down, t0.Add(rejoinSoonFor), &since) {
		t.Fatal("holder out of reach for rejoinSoonFor: still the short step")
	}
	if holderDown(other, t0.Add(rejoinSoonFor), &since) || !since.IsZero() {
		t.Fatal("another failure: the short step, or the run kept")
	}
	if !holderDown(down, t0.Add(2*rejoinSoonFor), &since) {
		t.Fatal("a new run after another failure: not the short step")
	}
}
