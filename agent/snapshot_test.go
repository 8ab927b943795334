package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/jpeg"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/hub"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// observer is an MQTT client that sends commands and records a device's topics.
type observer struct {
	t    *testing.T
	c    mqtt.Client
	tp   control.Topics
	mu   sync.Mutex
	msgs []mqtt.Message
}

func observe(t *testing.T, broker string, tp control.Topics) *observer {
	o := &observer{t: t, tp: tp}
	o.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("observer-" + tp.ID))
	if tok := o.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	tok := o.c.Subscribe(tp.Prefix+"/"+tp.ID+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		o.mu.Lock()
		o.msgs = append(o.msgs, m)
		o.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer subscribe: %v", tok.Error())
	}
	return o
}

// wait returns the first message after index from that satisfies ok.
func (o *observer) wait(from int, what string, ok func(mqtt.Message) bool) mqtt.Message {
	o.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		msgs := o.msgs[from:]
		o.mu.Unlock()
		for _, m := range msgs {
			if ok(m) {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	o.t.Fatalf("no %s", what)
	return nil
}

func (o *observer) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs)
}

// command sends a command and returns its reply.
func (o *observer) command(id, payload string) control.Reply {
	o.t.Helper()
	from := o.mark()
	if tok := o.c.Publish(o.tp.Cmd(), 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		o.t.Fatalf("send %s: %v", payload, tok.Error())
	}
	m := o.wait(from, "reply to "+id, func(m mqtt.Message) bool {
		return m.Topic() == o.tp.Reply() && strings.Contains(string(m.Payload()), `"id":"`+id+`"`)
	})
	var r control.Reply
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		o.t.Fatal(err)
	}
	return r
}

// startAgent runs an agent until the test ends or stop is called.
func startAgent(t *testing.T, cfg Config) (a *Agent, stop func()) {
	t.Helper()
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return a, stop
}

// checkSnapshot decodes the snapshot a reply announced and checks that it is the synthetic
// camera's picture of the moment the reply names: the counter and time strips read back,
// the time strip is the reply's capture time, and the whole picture is the one Render draws
// for that counter and time (JPEG-close). It returns the counter.
func checkSnapshot(t *testing.T, o *observer, from int, r control.Reply, sent time.Time, w, h int) uint32 {
	t.Helper()
	if !r.OK || r.Snapshot == nil {
		t.Fatalf("snapshot reply %+v", r)
	}
	m := o.wait(from, "snapshot", func(m mqtt.Message) bool { return m.Topic() == o.tp.Snapshot() && len(m.Payload()) > 0 })
	if len(m.Payload()) != r.Snapshot.Bytes || r.Snapshot.Topic != o.tp.Snapshot() {
		t.Fatalf("snapshot message of %d bytes, reply %+v", len(m.Payload()), r.Snapshot)
	}
	img, err := jpeg.Decode(bytes.NewReader(m.Payload()))
	if err != nil {
		t.Fatalf("snapshot is not a JPEG: %v", err)
	}
	y := img.(*image.YCbCr)
	if img.Bounds().Dx() != w || img.Bounds().Dy() != h || r.Snapshot.Width != w || r.Snapshot.Height != h {
		t.Fatalf("snapshot %v, reply %dx%d, want %dx%d", img.Bounds(), r.Snapshot.Width, r.Snapshot.Height, w, h)
	}
	capture := r.Snapshot.CaptureTime
	if capture.Before(sent.Add(-time.Second)) || capture.After(time.Now()) {
		t.Errorf("captured at %v: not the moment of the command (sent %v)", capture, sent)
	}
	if w < 512 {
		return 0 // the strips need the full width; the scaled picture is checked by size
	}
	counter, ms := synth.ReadCounterStrip(y.Y, y.YStride)
	if ms != uint32(capture.UnixMilli()) {
		t.Errorf("time strip %d, reply's capture time %d", ms, uint32(capture.UnixMilli()))
	}
	want := h264.NewFrame(w, h)
	synth.Render(want, uint64(counter), capture)
	var se float64
	for row := 0; row < h; row++ {
		for x := 0; x < w; x++ {
			d := float64(y.Y[row*y.YStride+x]) - float64(want.Y[row*w+x])
			se += d * d
		}
	}
	psnr := 10 * math.Log10(255*255/(se/float64(w*h)))
	if psnr < 30 {
		t.Errorf("snapshot differs from frame %d's picture: PSNR %.1f dB", counter, psnr)
	}
	t.Logf("snapshot: frame %d captured %v, %d bytes, luma PSNR %.1f dB against the rendered frame", counter, capture.Format(time.RFC3339Nano), r.Snapshot.Bytes, psnr)
	return counter
}

// TestSnapshotAndPrivacy is issue 14's done-when 2 and 3 for the synthetic camera: a
// snapshot idle (the camera opened for it and closed again) and in a call (the picture the
// call is sending) decodes as the picture of the frame counter drawn at that moment; privacy
// mode closes the camera, refuses joins and snapshots, shows in the state, survives a
// restart, and off lets a join work again.
func TestSnapshotAndPrivacy(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	hcfg := hub.Defaults()
	hcfg.Demo = true // loopback trust: this tests the agent; the hub route is tested in secure mode (e2e)
	hcfg.Listen, hcfg.MQTTListen, hcfg.StateDir = "127.0.0.1:0", "127.0.0.1:0", filepath.Join(dir, "hub")
	h, err := hub.New(hcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(hubCtx) }()
	defer func() { stopHub(); <-hubDone }()
	<-h.Ready()

	cfg := Defaults()
	cfg.ID, cfg.MQTT, cfg.Hub = "snap-device", h.BrokerURL(), "http://"+h.Addr()
	cfg.StateDir = filepath.Join(dir, "agent")
	cfg.Speaker, cfg.ICELoopbackOnly = "null", true
	before := synth.Open()
	a, stop := startAgent(t, cfg)
	o := observe(t, h.BrokerURL(), a.ctrl.Topics())

	// Idle: the camera opens for the snapshot and closes again.
	sent := time.Now()
	r := o.command("s1", `{"id":"s1","action":"snapshot"}`)
	if c := checkSnapshot(t, o, 0, r, sent, 640, 480); c != 0 {
		t.Errorf("idle snapshot is frame %d of a camera opened for it, want its first", c)
	}
	if n := synth.Open() - before; n != 0 || r.State.State != "idle" || r.State.Privacy {
		t.Fatalf("after an idle snapshot: %d cameras open, state %+v", n, r.State)
	}

	// In a call: the call's own camera, no second one.
	if r := o.command("j1", `{"id":"j1","action":"join","channel":"snap"}`); !r.OK || r.State.State != "joined" {
		t.Fatalf("join: %+v", r)
	}
	time.Sleep(500 * time.Millisecond) // frames flow
	from := o.mark()
	sent = time.Now()
	r = o.command("s2", `{"id":"s2","action":"snapshot"}`)
	if c := checkSnapshot(t, o, from, r, sent, 640, 480); c == 0 {
		t.Error("snapshot in a call is the first frame: not the call's running camera")
	}
	if n := synth.Open() - before; n != 1 || r.State.State != "joined" {
		t.Fatalf("snapshot in a call: %d cameras open, state %s", n, r.State.State)
	}
	from = o.mark()
	r = o.command("s3", `{"id":"s3","action":"snapshot","maxWidth":320}`)
	checkSnapshot(t, o, from, r, time.Now(), 320, 240)

	// Privacy on: the call ends, the camera closes, the snapshot is cleared, joins and
	// snapshots are refused with a clear error.
	from = o.mark()
	r = o.command("p1", `{"id":"p1","action":"privacy","on":true}`)
	if !r.OK || !r.State.Privacy || r.State.State != "idle" {
		t.Fatalf("privacy on: %+v", r)
	}
	o.wait(from, "cleared snapshot", func(m mqtt.Message) bool { return m.Topic() == o.tp.Snapshot() && len(m.Payload()) == 0 })
	o.wait(from, "state with privacy", func(m mqtt.Message) bool {
		return m.Topic() == o.tp.State() && strings.Contains(string(m.Payload()), `"privacy":true`)
	})
	a.mu.Lock()
	inCall := a.call != nil
	a.mu.Unlock()
	if n := synth.Open() - before; n != 0 || inCall {
		t.Fatalf("privacy on: %d cameras open, in a call %v (the call's microphone and speaker close with it)", n, inCall)
	}
	for _, c := range []struct{ id, cmd string }{
		{"j2", `{"id":"j2","action":"join","channel":"snap"}`},
		{"s4", `{"id":"s4","action":"snapshot"}`},
	} {
		r := o.command(c.id, c.cmd)
		if r.OK || !strings.Contains(r.Error, "privacy mode is on") || r.State.State != "idle" || !r.State.Privacy || r.Snapshot != nil {
			t.Fatalf("%s in privacy mode: %+v", c.cmd, r)
		}
	}
	if n := synth.Open() - before; n != 0 {
		t.Fatalf("refused commands opened %d cameras", n)
	}

	// A restart keeps privacy mode.
	stop()
	a, _ = startAgent(t, cfg)
	if st := a.State(); !st.Privacy {
		t.Fatalf("after a restart: %+v", st)
	}
	if r := o.command("j3", `{"id":"j3","action":"join","channel":"snap"}`); r.OK || !r.State.Privacy {
		t.Fatalf("join after a restart in privacy mode: %+v", r)
	}

	// Off: a join works again.
	if r := o.command("p2", `{"id":"p2","action":"privacy","on":false}`); !r.OK || r.State.Privacy {
		t.Fatalf("privacy off: %+v", r)
	}
	if r := o.command("j4", `{"id":"j4","action":"join","channel":"snap"}`); !r.OK || r.State.State != "joined" || r.State.Privacy {
		t.Fatalf("join after privacy off: %+v", r)
	}
	if n := synth.Open() - before; n != 1 {
		t.Fatalf("in a call again: %d cameras open", n)
	}
}
