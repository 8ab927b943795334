// Package backoff computes the delays of a retrying loop: exponential from a first step,
// capped at a maximum, each delay drawn at random from the upper half of its step. The
// randomness matters: a fleet that lost the same hub or broker at the same moment would
// otherwise come back in lockstep and knock it over again. The cap is a hard bound (no delay
// exceeds Max), so documented limits such as "at most 30 s" hold.
//
// A Backoff belongs to one loop: it is not safe for concurrent use. The zero value is not
// useful; set First and Max (or use New).
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff counts a loop's consecutive failures and says how long to wait before the next try.
type Backoff struct {
	// First is the step of the first delay (the delay itself is drawn from [First/2, First]).
	First time.Duration
	// Max caps every step, and so every delay.
	Max time.Duration

	failures int
}

// New returns a Backoff whose first step is first, doubling up to max.
func New(first, max time.Duration) *Backoff { return &Backoff{First: first, Max: max} }

// Step is the n-th step (n from 0): first·2ⁿ, capped at max.
func Step(first, max time.Duration, n int) time.Duration {
	if first <= 0 {
		return 0
	}
	d := first
	for i := 0; i < n && d < max; i++ {
		d *= 2 // d < max, so this cannot overflow while max is a sane duration
	}
	return min(d, max)
}

// Delay is a random delay for the n-th consecutive failure (n from 0): uniform in the upper
// half of Step(first, max, n). It is the stateless form of Backoff.Next.
func Delay(first, max time.Duration, n int) time.Duration {
	step := Step(first, max, n)
	if step <= 0 {
		return 0
	}
	half := step / 2
	return half + rand.N(step-half+1)
}

// Next counts a failure and returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	d := Delay(b.First, b.Max, b.failures)
	if Step(b.First, b.Max, b.failures) < b.Max {
		b.failures++ // once at the cap, counting on only risks an overflow in a long outage
	}
	return d
}

// Failures is how many steps Next has taken since the last Reset (it stops counting once the
// steps reach Max).
func (b *Backoff) Failures() int { return b.failures }

// Reset forgets past failures, after a success: the next delay starts from First again.
func (b *Backoff) Reset() { b.failures = 0 }

// Wait counts a failure and sleeps for the next delay, or until ctx ends or stop (which may
// be nil) is closed. It returns the delay it chose, and ctx's error if ctx ended first, or
// ErrStopped if stop was closed first.
func (b *Backoff) Wait(ctx context.Context, stop <-chan struct{}) (time.Duration, error) {
	d := b.Next()
	return d, Sleep(ctx, d, stop)
}

// ErrStopped is returned by Wait and Sleep when their stop channel was closed.
var ErrStopped = errors.New("backoff: stopped")

// Sleep waits for d, or until ctx ends or stop (which may be nil) is closed.
func Sleep(ctx context.Context, d time.Duration, stop <-chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return ErrStopped
	}
}
