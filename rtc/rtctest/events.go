package rtctest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/camagent/camagent/rtc"
)

// EventLog keeps every event a client gets, so that a test can look for one in any order.
type EventLog struct {
	mu   sync.Mutex
	seen []*rtc.Message
}

// LogEvents reads c's events until it ends.
func LogEvents(c *rtc.Client) *EventLog {
	l := &EventLog{}
	go func() {
		for m := range c.Events() {
			l.mu.Lock()
			l.seen = append(l.seen, m)
			l.mu.Unlock()
		}
	}()
	return l
}

// Find returns the first event seen that matches ok, or nil.
func (l *EventLog) Find(ok func(*rtc.Message) bool) *rtc.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.seen {
		if ok(m) {
			return m
		}
	}
	return nil
}

// Has reports whether an event matching ok was seen.
func (l *EventLog) Has(ok func(*rtc.Message) bool) bool { return l.Find(ok) != nil }

// Wait waits until an event matching ok has been seen (before or from now on) and returns it.
func (l *EventLog) Wait(ctx context.Context, what string, ok func(*rtc.Message) bool) (*rtc.Message, error) {
	for {
		if m := l.Find(ok); m != nil {
			return m, nil
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: not seen: %w", what, ctx.Err())
		}
	}
}

// Is matches the event name about uid (and kind, unless empty).
func Is(name string, uid uint32, kind string) func(*rtc.Message) bool {
	return func(m *rtc.Message) bool {
		return m.Event == name && m.UID != nil && *m.UID == uid && (kind == "" || m.Kind == kind)
	}
}
