package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/camagent/camagent/rtc"
)

// failoverViewer watches the device through any hub: each session enters through the next of
// its entry points (the one it used may be dead) and follows the hub's redirects.
type failoverViewer struct {
	api         *webrtc.API
	entries     []string
	uid, device uint32

	mu      sync.Mutex
	joined  string    // the current session's hub (its signalling URL); "" between sessions
	fresh   time.Time // the current session's first video packet
	lastErr error
	next    int
}

func (v *failoverViewer) hub() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.joined
}

func (v *failoverViewer) err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastErr
}

func (v *failoverViewer) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := v.session(ctx)
		v.mu.Lock()
		v.lastErr, v.joined = err, ""
		v.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (v *failoverViewer) session(ctx context.Context) error {
	entry := v.entries[v.next%len(v.entries)]
	v.next++
	tok, err := failoverToken(v.uid)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	c, _, err := rtc.DialJoin(dctx, rtc.ClientOptions{URL: entry, API: v.api, Logger: slog.New(slog.DiscardHandler),
		RequestTimeout: 3 * time.Second}, "demo", failoverChannel, v.uid, tok)
	cancel()
	if err != nil {
		return err // a dead entry point: the next session tries the next one
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	v.mu.Lock()
	v.joined = c.URL()
	v.mu.Unlock()
	var track *webrtc.TrackRemote
	for track == nil {
		if track, err = c.Subscribe(ctx, v.device, rtc.KindVideo); err != nil {
			select { // not published yet: the device is on its way
			case <-ctx.Done():
				return ctx.Err()
			case <-c.Done():
				return c.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	for first := true; ; {
		track.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _, err := track.ReadRTP()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the device's video ended: %w", err) // a new session subscribes again
		}
		if err == nil {
			if first {
				v.mu.Lock()
				v.fresh, first = time.Now(), false
				v.mu.Unlock()
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
			return c.Err()
		default:
		}
	}
}

// videoAfter waits for the first video packet of a session begun after t0 and returns when
// it came.
func (v *failoverViewer) videoAfter(t0 time.Time, timeout time.Duration) (time.Time, error) {
	for deadline := time.Now().Add(timeout); ; time.Sleep(5 * time.Millisecond) {
		v.mu.Lock()
		fresh, last := v.fresh, v.lastErr
		v.mu.Unlock()
		if fresh.After(t0) {
			return fresh, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("viewer %d: no video on a new session within %v (last error: %v)", v.uid, timeout, last)
		}
	}
}
