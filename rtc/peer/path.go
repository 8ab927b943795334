// path.go: watching a peer connection's media path, driven by its state events.

package peer

import (
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// PathOptions say when a lost media path calls for an ICE restart.
type PathOptions struct {
	// After is how long the connection may stay disconnected before the path counts as lost
	// (consent freshness lapses a few seconds into a cut; a failed connection is lost at
	// once). Zero or negative: only a failed connection is lost.
	After time.Duration
	// Retry is how long after the n-th restart (n from 1) the watcher calls Lost again while
	// the path is not back. Nil: Lost is called once per loss.
	Retry func(n int) time.Duration
	// Log (nil: slog.Default) gets a line when the path is lost and when it is back.
	Log *slog.Logger
}

// PathEvents are the watcher's calls.
type PathEvents struct {
	// Up runs each time the connection is connected; wasLost says the path had been lost
	// (Lost was called or due) since the last time.
	Up func(wasLost bool)
	// Lost runs when the path is lost and it is time for restart number n (from 1); lostAt
	// is when the loss began. It runs on its own goroutine and may block (a request over
	// the signalling socket); the next call waits for it.
	Lost func(n int, lostAt time.Time)
	// Closed runs once when the connection is closed; the watch ends with it.
	Closed func()
}

// Path watches one peer connection's media path (see Watch).
type Path struct {
	o  PathOptions
	ev PathEvents
	pc *webrtc.PeerConnection

	mu      sync.Mutex
	lostAt  time.Time   // zero while the path is up (or not yet up)
	epoch   uint64      // counts losses: a timer belongs to one of them
	tries   int         // Lost calls for this loss
	timer   *time.Timer // the next Lost, if one is due
	closed  bool
	running sync.WaitGroup // a Lost call in progress
}

// Watch starts watching pc's media path. It owns pc's OnConnectionStateChange handler. The
// watch ends when pc closes or Close is called.
func Watch(pc *webrtc.PeerConnection, o PathOptions, ev PathEvents) *Path {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Path{o: o, ev: ev, pc: pc}
	pc.OnConnectionStateChange(p.onState)
	return p
}

func (p *Path) onState(st webrtc.PeerConnectionState) {
	switch st {
	case webrtc.PeerConnectionStateConnected:
		p.mu.Lock()
		wasLost, lostAt := !p.lostAt.IsZero(), p.lostAt
		p.resetLocked()
		closed := p.closed
		p.mu.Unlock()
		if wasLost {
			p.o.Log.Info("media path restored", "after", time.Since(lostAt).Round(time.Millisecond))
		}
		if !closed && p.ev.Up != nil {
			p.ev.Up(wasLost)
		}
	case webrtc.PeerConnectionStateDisconnected:
		if p.o.After > 0 {
			p.lose(p.o.After, "disconnected")
		}
	case webrtc.PeerConnectionStateFailed:
		p.lose(0, "failed")
	case webrtc.PeerConnectionStateClosed:
		if p.stop() && p.ev.Closed != nil {
			p.ev.Closed()
		}
	}
}

// LostElsewhere marks the path lost now, though this end's state may look fine: the far end
// says it lost the path (say, only this end's uplink died). Nothing changes if the path is
// already known to be lost.
func (p *Path) LostElsewhere() {
	p.mu.Lock()
	known := !p.lostAt.IsZero()
	p.mu.Unlock()
	if !known {
		p.o.Log.Warn("media path lost at the far end", "state", p.pc.ConnectionState().String())
		p.lose(0, "lost at the far end")
	}
}

// lose records a loss (if the path was up) and makes the first Lost due in at most after.
func (p *Path) lose(after time.Duration, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.lostAt.IsZero() {
		p.lostAt = time.Now()
		p.epoch++
		p.o.Log.Warn("media path lost", "state", why)
	}
	if p.tries > 0 {
		return // restarting already: its retry timer stands
	}
	if p.timer != nil {
		if after > 0 {
			return // the first restart is already due
		}
		p.timer.Stop()
	}
	p.scheduleLocked(after)
}

// scheduleLocked makes the next Lost call of the current loss due in d.
func (p *Path) scheduleLocked(d time.Duration) {
	epoch := p.epoch
	p.timer = time.AfterFunc(d, func() { p.fire(epoch) })
}

func (p *Path) fire(epoch uint64) {
	p.mu.Lock()
	if p.closed || p.epoch != epoch || p.lostAt.IsZero() {
		p.mu.Unlock()
		return
	}
	p.timer = nil
	if p.tries > 0 && p.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		// Back without a state change to say so: a restart after LostElsewhere on a
		// connection that looked fine here all along.
		lostAt := p.lostAt
		p.resetLocked()
		p.mu.Unlock()
		p.o.Log.Info("media path restored", "after", time.Since(lostAt).Round(time.Millisecond))
		if p.ev.Up != nil {
			p.ev.Up(true)
		}
		return
	}
	p.tries++
	n, lostAt := p.tries, p.lostAt
	p.running.Add(1)
	p.mu.Unlock()
	defer p.running.Done()
	if p.ev.Lost != nil {
		p.ev.Lost(n, lostAt)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.o.Retry != nil && !p.closed && p.epoch == epoch && !p.lostAt.IsZero() {
		p.scheduleLocked(p.o.Retry(n))
	}
}

func (p *Path) resetLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.lostAt, p.tries = time.Time{}, 0
	p.epoch++
}

// stop ends the watch; it reports whether this call ended it.
func (p *Path) stop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := !p.closed
	p.closed = true
	p.resetLocked()
	return first
}

// Close ends the watch and waits for a Lost call in progress.
func (p *Path) Close() {
	p.stop()
	p.running.Wait()
}
