package reopen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
)

// fake yields n samples, then fails like an unplugged camera.
type fake struct {
	n        int
	keyframe atomic.Bool
	closed   atomic.Bool
}

var errUnplugged = errors.New("fake: no such device")

func (f *fake) MimeType() string { return "video/H264" }
func (f *fake) RequestKeyframe() { f.keyframe.Store(true) }
func (f *fake) Close() error     { f.closed.Store(true); return nil }
func (f *fake) ReadSample(ctx context.Context) (device.Sample, error) {
	if f.n == 0 {
		return device.Sample{}, errUnplugged
	}
	f.n--
	return device.Sample{Data: []byte{1}}, nil
}

func TestReopensAfterFailures(t *testing.T) {
	var (
		mu     sync.Mutex
		opened []*fake
		errs   []error
		fails  = 2 // the device is missing for two attempts after the first failure
	)
	open := func(ctx context.Context) (device.VideoSource, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(opened) == 1 && fails > 0 {
			fails--
			return nil, errors.New("fake: open: no such file")
		}
		f := &fake{n: 3}
		opened = append(opened, f)
		return f, nil
	}
	s, err := New(context.Background(), open, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	s.Min, s.Max = time.Millisecond, 5*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 6; i++ {
		if _, err := s.ReadSample(ctx); err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	mu.Lock()
	if len(opened) != 2 || !opened[0].closed.Load() {
		t.Errorf("opened %d sources (want 2), first closed %v", len(opened), opened[0].closed.Load())
	}
	if len(errs) != 3 || !errors.Is(errs[0], errUnplugged) {
		t.Errorf("reported %v, want the unplug and two failed opens", errs)
	}
	mu.Unlock()
	s.RequestKeyframe()
	if !opened[1].keyframe.Load() {
		t.Error("keyframe request did not reach the current source")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadSample(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestCloseAndCancelDuringBackoff(t *testing.T) {
	open := func(ctx context.Context) (device.VideoSource, error) { return &fake{}, nil }
	s, err := New(context.Background(), open, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Min, s.Max = time.Hour, time.Hour
	done := make(chan error, 1)
	go func() { _, err := s.ReadSample(context.Background()); done <- err }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("ReadSample after Close during back-off: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a back-off")
	}
	s2, _ := New(context.Background(), open, nil)
	s2.Min, s2.Max = time.Hour, time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s2.ReadSample(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled ReadSample: %v", err)
	}
	if _, err := New(context.Background(), func(context.Context) (device.VideoSource, error) { return nil, errUnplugged }, nil); !errors.Is(err, errUnplugged) {
		t.Errorf("first open failure not returned: %v", err)
	}
}
