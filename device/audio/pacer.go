package audio

import (
	"context"
	"errors"
	"time"
)

// ErrClosed is returned by reads and writes on a closed microphone, speaker or mixer.
var ErrClosed = errors.New("audio: closed")

// maxLagTicks is how far (in periods) a Pacer lets its caller fall behind before it
// gives up catching up and restarts the schedule from now.
const maxLagTicks = 10

// Pacer keeps a drift-free real-time schedule of one tick per period: tick k is due at
// start + k·period, where start is the first call, so sleeping late once does not
// shift later ticks. A caller that falls behind gets its missed ticks at once (the
// long-run rate stays exact); one that falls more than 10 periods behind (a stall)
// restarts the schedule from now instead of bursting.
//
// A Pacer is used by one goroutine at a time.
type Pacer struct {
	period  time.Duration
	start   time.Time
	ticks   int64
	started bool
	timer   *time.Timer
}

// NewPacer returns a Pacer ticking every period (device.FrameDuration for audio).
func NewPacer(period time.Duration) *Pacer {
	if period <= 0 {
		period = time.Millisecond
	}
	return &Pacer{period: period}
}

// Due returns when the next tick is due. The first call starts the schedule now.
func (p *Pacer) Due() time.Time {
	now := time.Now()
	if !p.started {
		p.started, p.start, p.ticks = true, now, 0
	}
	due := p.start.Add(time.Duration(p.ticks) * p.period)
	if now.Sub(due) > maxLagTicks*p.period {
		p.start, p.ticks, due = now, 0, now
	}
	return due
}

// Tick marks the current tick as done.
func (p *Pacer) Tick() { p.ticks++ }

// Advance moves the schedule d earlier: every later tick is due d sooner.
func (p *Pacer) Advance(d time.Duration) { p.start = p.start.Add(-d) }

// Reset forgets the schedule: the next Wait returns at once and starts a new one.
func (p *Pacer) Reset() { p.started = false }

// Wait blocks until the next tick is due and consumes it. It returns ctx.Err() if ctx
// ends first (the tick is then not consumed).
func (p *Pacer) Wait(ctx context.Context) error {
	return p.WaitDone(ctx, nil)
}

// WaitDone is Wait that also returns ErrClosed when done is closed first; sources use it
// so that Close unblocks a pending read.
func (p *Pacer) WaitDone(ctx context.Context, done <-chan struct{}) error {
	d := time.Until(p.Due())
	if d <= 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrClosed
		default:
		}
		p.Tick()
		return nil
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		p.Tick()
		return nil
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	case <-done:
		p.timer.Stop()
		return ErrClosed
	}
}
