package hub

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/broker"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// testJPEG is a small real JPEG whose grey level is v.
func testJPEG(t *testing.T, v uint8) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 32, 24))
	for i := range img.Pix {
		img.Pix[i] = v
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// greyOf decodes a JPEG and returns its first pixel's grey level.
func greyOf(t *testing.T, b []byte) uint8 {
	t.Helper()
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a JPEG: %v", err)
	}
	return color.GrayModel.Convert(img.At(0, 0)).(color.Gray).Y
}

// TestSnapshots runs the hub's snapshot store against the real embedded broker: retained
// snapshots from before the hub connected, clearing, refusals (not a JPEG, too large, the
// memory bound), and fresh requests (one command shared by concurrent callers, a recent
// snapshot counting as fresh, the device's refusal and silence).
func TestSnapshots(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0", AllowAnonymous: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(ctx) }()
	defer func() { cancel(); <-bdone }()
	<-b.Ready()
	url := "tcp://" + b.Addr()
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("devices"))
	if tok := dev.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	publish := func(id string, payload []byte) {
		t.Helper()
		if tok := dev.Publish(control.Topics{ID: id}.Snapshot(), 1, true, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	// Retained before the hub is there.
	publish("porch", testJPEG(t, 10))
	publish("bad", []byte("<html>not a picture</html>"))
	dev.Publish("camagent/a/b/snapshot", 1, true, testJPEG(t, 20)).Wait()

	var asks atomic.Int32
	var grey atomic.Uint32
	grey.Store(100)
	ask := func(ctx context.Context, id string) error {
		asks.Add(1)
		switch id {
		case "refuser":
			return &apiError{http.StatusConflict, "DEVICE_REFUSED", "privacy mode is on"}
		case "silent":
			return nil // answers, but no picture comes
		}
		time.Sleep(50 * time.Millisecond) // a camera opening: callers arrive meanwhile
		publish(id, testJPEG(t, uint8(grey.Add(10))))
		return nil
	}
	s := newSnapshots(snapshotOptions{Broker: url, Logger: slog.New(slog.DiscardHandler), Ask: ask,
		FreshWait: 500 * time.Millisecond, MaxHeld: len(testJPEG(t, 40)) * 5 / 2}) // two fit, not three
	sdone := make(chan struct{})
	sctx, sstop := context.WithCancel(ctx)
	go func() { s.Run(sctx); close(sdone) }()
	defer func() { sstop(); <-sdone }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s", what)
			}
		}
	}
	waitFor("retained snapshot of porch", func() bool { _, ok := s.latest("porch"); return ok })
	if st, _ := s.latest("porch"); greyOf(t, st.jpeg) != 10 {
		t.Fatalf("porch's retained snapshot has grey %d", greyOf(t, st.jpeg))
	}
	for _, id := range []string{"bad", "a", "b", "nobody"} {
		if _, ok := s.latest(id); ok {
			t.Errorf("a snapshot for %q", id)
		}
	}

	// Eight callers at once: one command, one new picture for all.
	before, _ := s.latest("porch")
	time.Sleep(snapshotFreshWithin) // porch's retained one is no longer fresh
	var wg sync.WaitGroup
	got := make([]still, 8)
	for i := range got {
		wg.Go(func() {
			st, err := s.fresh(context.Background(), "porch")
			if err != nil {
				t.Errorf("fresh: %v", err)
			}
			got[i] = st
		})
	}
	wg.Wait()
	if n := asks.Load(); n != 1 {
		t.Errorf("8 concurrent fresh requests sent %d commands, want 1", n)
	}
	for _, st := range got {
		if st.seq <= before.seq || st.seq != got[0].seq || greyOf(t, st.jpeg) != 110 {
			t.Fatalf("fresh snapshot seq %d grey %d (the one before: seq %d)", st.seq, greyOf(t, st.jpeg), before.seq)
		}
	}
	// Just received: fresh enough, no command.
	if st, err := s.fresh(context.Background(), "porch"); err != nil || st.seq != got[0].seq || asks.Load() != 1 {
		t.Errorf("fresh right after a fresh one: seq %d (want %d), err %v, %d commands", st.seq, got[0].seq, err, asks.Load())
	}

	var ae *apiError
	if _, err := s.fresh(context.Background(), "refuser"); !errors.As(err, &ae) || ae.status != http.StatusConflict {
		t.Errorf("refused snapshot: %v", err)
	}
	if _, err := s.fresh(context.Background(), "silent"); !errors.As(err, &ae) || ae.status != http.StatusGatewayTimeout {
		t.Errorf("a device that answers without a picture: %v", err)
	}
	ended, stop := context.WithCancel(context.Background())
	stop()
	if _, err := s.fresh(ended, "silent"); !errors.Is(err, context.Canceled) {
		t.Errorf("a request that ended: %v", err)
	}

	// Cleared (privacy mode), too large, not a JPEG: nothing is kept.
	publish("porch", nil)
	waitFor("porch cleared", func() bool { _, ok := s.latest("porch"); return !ok })
	big := append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, control.MaxSnapshotSize)...)
	publish("garage", testJPEG(t, 30))
	waitFor("garage", func() bool { _, ok := s.latest("garage"); return ok })
	publish("garage", big)
	waitFor("garage's oversized snapshot refused", func() bool { _, ok := s.latest("garage"); return !ok })

	// The memory bound: three devices' snapshots where two fit; the oldest goes.
	for i, id := range []string{"d1", "d2", "d3"} {
		publish(id, testJPEG(t, uint8(40+i)))
		waitFor(id, func() bool { _, ok := s.latest(id); return ok })
	}
	if _, ok := s.latest("d1"); ok {
		t.Error("the oldest snapshot stayed beyond the memory bound")
	}
	s.mu.Lock()
	held, n := s.held, len(s.byID)
	s.mu.Unlock()
	if held > s.opts.MaxHeld || n != 2 {
		t.Errorf("holding %d bytes in %d snapshots, bound %d", held, n, s.opts.MaxHeld)
	}
	publish("d2", nil)
	publish("d3", nil)
}
