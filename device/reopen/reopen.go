// Package reopen keeps a device.VideoSource going through failures: when the camera is
// unplugged, stalls or its helper process dies, the failure is reported to a callback,
// the source is closed and opened again with exponential back-off and jitter, and the
// caller's ReadSample simply waits for the next picture.
//
// A Source is read by one goroutine; RequestKeyframe and Close may be called from any.
package reopen

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/internal/backoff"
)

// ErrClosed is returned by ReadSample after Close.
var ErrClosed = errors.New("reopen: source closed")

// Opener opens the underlying source.
type Opener func(ctx context.Context) (device.VideoSource, error)

// Source is a device.VideoSource that reopens its underlying source after failures.
type Source struct {
	open    Opener
	onError func(error)
	// Min and Max bound the back-off between attempts (defaults 250 ms and 10 s).
	Min, Max time.Duration

	mu        sync.Mutex
	cur       device.VideoSource
	closed    chan struct{}
	closeOnce sync.Once
	bo        backoff.Backoff // Min and Max, read when a failure is counted
}

var (
	_ device.VideoSource = (*Source)(nil)
	_ device.StillSource = (*Source)(nil)
)

// New opens the source once (its error is returned: a camera that is not there at all
// is a configuration problem) and returns the reopening wrapper. onError receives every
// later failure.
func New(ctx context.Context, open Opener, onError func(error)) (*Source, error) {
	first, err := open(ctx)
	if err != nil {
		return nil, err
	}
	if onError == nil {
		onError = func(error) {}
	}
	return &Source{open: open, onError: onError, cur: first, closed: make(chan struct{}),
		Min: 250 * time.Millisecond, Max: 10 * time.Second}, nil
}

// MimeType is "video/H264".
func (s *Source) MimeType() string { return "video/H264" }

// RequestKeyframe asks the current source for an IDR (a reopened source starts with one).
func (s *Source) RequestKeyframe() {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	if cur != nil {
		cur.RequestKeyframe()
	}
}

// LatestPicture is the current source's latest picture (device.ErrNoStill when it keeps
// none, device.ErrNoPicture while it is being reopened).
func (s *Source) LatestPicture() (device.Picture, error) {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	if cur == nil {
		return device.Picture{}, device.ErrNoPicture
	}
	st, ok := cur.(device.StillSource)
	if !ok {
		return device.Picture{}, device.ErrNoStill
	}
	return st.LatestPicture()
}

// Close closes the current source; ReadSample returns ErrClosed.
func (s *Source) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	s.mu.Lock()
	cur := s.cur
	s.cur = nil
	s.mu.Unlock()
	if cur != nil {
		return cur.Close()
	}
	return nil
}

func (s *Source) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// ReadSample returns the next access unit, reopening the source as often as needed.
func (s *Source) ReadSample(ctx context.Context) (device.Sample, error) {
	for {
		if s.isClosed() {
			return device.Sample{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return device.Sample{}, err
		}
		s.mu.Lock()
		cur := s.cur
		s.mu.Unlock()
		if cur == nil {
			src, err := s.open(ctx)
			if err != nil {
				if ctx.Err() == nil && !s.isClosed() {
					s.onError(err)
				}
				if err := s.pause(ctx); err != nil {
					return device.Sample{}, err
				}
				continue
			}
			s.mu.Lock()
			if s.isClosed() {
				s.mu.Unlock()
				src.Close()
				return device.Sample{}, ErrClosed
			}
			s.cur, cur = src, src
			s.mu.Unlock()
		}
		smp, err := cur.ReadSample(ctx)
		if err == nil {
			s.bo.Reset()
			return smp, nil
		}
		if ctx.Err() != nil {
			return device.Sample{}, ctx.Err()
		}
		if s.isClosed() {
			return device.Sample{}, ErrClosed
		}
		s.onError(err)
		s.mu.Lock()
		if s.cur == cur {
			s.cur = nil
		}
		s.mu.Unlock()
		cur.Close()
		if err := s.pause(ctx); err != nil {
			return device.Sample{}, err
		}
	}
}

// pause waits out the next back-off step (Min doubling to Max, jittered: internal/backoff).
func (s *Source) pause(ctx context.Context) error {
	s.bo.First, s.bo.Max = s.Min, s.Max
	if _, err := s.bo.Wait(ctx, s.closed); errors.Is(err, backoff.ErrStopped) {
		return ErrClosed
	} else if err != nil {
		return err
	}
	return nil
}
