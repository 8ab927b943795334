package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// fakeAgent is a Handler that records what it runs and keeps a state.
type fakeAgent struct {
	mu    sync.Mutex
	calls []control.Command
	state control.State
	dev   func() *control.Client // to publish state from the handler
	block chan struct{}          // if set, each command waits for it
}

func (a *fakeAgent) handle(ctx context.Context, cmd control.Command) (control.State, error) {
	if a.block != nil {
		select {
		case <-a.block:
		case <-ctx.Done():
		}
	}
	a.mu.Lock()
	a.calls = append(a.calls, cmd)
	var err error
	switch cmd.Action {
	case control.ActionJoin:
		if cmd.Channel == "forbidden" {
			a.state = control.State{State: control.StateError, Error: "token refused", Since: time.Now()}
			err = errors.New("token refused by the hub")
		} else {
			uid := uint32(1000) // the device's default
			if cmd.UID != nil {
				uid = *cmd.UID
			}
			a.state = control.State{State: control.StateJoined, Channel: cmd.Channel, UID: uid, Users: []uint32{7}, Since: time.Now()}
		}
	case control.ActionLeave:
		a.state = control.State{State: control.StateIdle, Privacy: a.state.Privacy, Since: time.Now()}
	case control.ActionPrivacy:
		a.state.Privacy = *cmd.On
	}
	st := a.state
	a.mu.Unlock()
	if cmd.Action == control.ActionSnapshot && a.dev != nil {
		jpeg := []byte("\xff\xd8 a picture \xff\xd9")
		if err := a.dev().PublishSnapshot(jpeg); err != nil {
			return st, err
		}
		control.ReplySnapshot(ctx, control.SnapshotInfo{Bytes: len(jpeg), Width: 2, Height: 2, Topic: a.dev().Topics().Snapshot()})
	}
	if a.dev != nil && cmd.Action != control.ActionStatus {
		if perr := a.dev().PublishState(st); perr != nil {
			return st, perr
		}
	}
	return st, err
}

func (a *fakeAgent) count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if c.ID == id {
			n++
		}
	}
	return n
}

func newAgentDevice(t *testing.T, addr, id string) (*fakeAgent, *device) {
	a := &fakeAgent{state: control.State{State: control.StateIdle}}
	var d *device
	a.dev = func() *control.Client { return d.Client }
	d = startDevice(t, control.Options{URL: "tcp://" + addr, ID: id, Handler: a.handle})
	if err := d.PublishState(a.state); err != nil {
		t.Fatal(err)
	}
	return a, d
}

func TestCommands(t *testing.T) {
	eachBroker(t, func(t *testing.T, b testBroker) {
		o := observe(t, b.Addr(), "cam1")
		a, d := newAgentDevice(t, b.Addr(), "cam1")
		tp := d.Topics()

		o.send(t, tp, `{"id":"j1","action":"join","channel":"lobby","uid":42,"token":"secret-token"}`)
		r := o.reply(t, tp, "j1")
		if !r.OK || r.Error != "" || r.State == nil || r.State.State != "joined" || r.State.Channel != "lobby" || r.State.UID != 42 {
			t.Fatalf("join reply %+v", r)
		}
		o.waitFor(t, 0, 5*time.Second, "joined state", isState(tp.State(), "joined"))

		o.send(t, tp, `{"id":"s1","action":"status"}`)
		if r := o.reply(t, tp, "s1"); !r.OK || r.State.State != "joined" {
			t.Fatalf("status reply %+v", r)
		}

		// A redelivered command is answered again, not run again.
		o.send(t, tp, `{"id":"j1","action":"join","channel":"lobby","uid":42}`)
		o.send(t, tp, `{"id":"l1","action":"leave"}`)
		if r := o.reply(t, tp, "l1"); !r.OK || r.State.State != "idle" {
			t.Fatalf("leave reply %+v", r)
		}
		if n := o.repliesTo(tp, "j1"); n != 2 {
			t.Fatalf("%d replies to j1, want 2", n)
		}
		if n := a.count("j1"); n != 1 {
			t.Fatalf("j1 ran %d times, want 1", n)
		}

		// Handler errors: ok:false with the error and the state.
		o.send(t, tp, `{"id":"j2","action":"join","channel":"forbidden","uid":1}`)
		if r := o.reply(t, tp, "j2"); r.OK || r.Error != "token refused by the hub" || r.State == nil || r.State.State != "error" {
			t.Fatalf("failed join reply %+v", r)
		}

		// Malformed commands: ok:false, precise error, handler not called.
		before := len(a.calls)
		for _, tc := range []struct{ id, payload, err string }{
			{"m1", `{"id":"m1","action":"join","channel":5}`, `field "channel" must be a string, not a number`},
			{"m2", `{"id":"m2","action":"fly"}`, `unknown action "fly"`},
			{"m3", `{"id":"m3","action":"join","channel":"c","uid":"9"}`, `field "uid" must be a number`},
			{"m4", `{"id":"m4","action":"join"}`, `join needs a "channel"`},
			{"m5", `{"id":"m5","action":"status","pad":"` + strings.Repeat("x", control.MaxCommandSize) + `"}`, `more than the 16384 allowed`},
		} {
			o.send(t, tp, tc.payload)
			if tc.id == "m5" {
				tc.id = "" // too large to read an id from
			}
			r := o.reply(t, tp, tc.id)
			if r.OK || !strings.Contains(r.Error, tc.err) {
				t.Fatalf("reply to %.60s: %+v, want error %q", tc.payload, r, tc.err)
			}
		}
		m := o.mark()
		o.send(t, tp, `{"id":"m6",`)
		_, msg := o.waitFor(t, m, 5*time.Second, "reply to bad JSON", func(m message) bool { return m.topic == tp.Reply() })
		var r6 control.Reply
		if err := json.Unmarshal([]byte(msg.payload), &r6); err != nil || r6.OK || r6.ID != "" || !strings.HasPrefix(r6.Error, "invalid JSON") {
			t.Fatalf("reply to bad JSON: %s", msg.payload)
		}
		// A command without an id is still answered.
		m = o.mark()
		o.send(t, tp, `{"action":"status"}`)
		_, msg = o.waitFor(t, m, 5*time.Second, "reply without id", func(m message) bool { return m.topic == tp.Reply() })
		if !strings.HasPrefix(msg.payload, `{"id":"","ok":true,`) {
			t.Fatalf("reply without id: %s", msg.payload)
		}
		a.mu.Lock()
		ran := len(a.calls) - before
		a.mu.Unlock()
		if ran != 1 {
			t.Fatalf("handler ran %d times for 6 malformed and 1 good command, want 1", ran)
		}
	})
}

func TestOrderAndBusy(t *testing.T) {
	e := startEmbedded(t)
	o := observe(t, e.Addr(), "cam1")
	a := &fakeAgent{block: make(chan struct{})}
	d := startDevice(t, control.Options{URL: "tcp://" + e.Addr(), ID: "cam1", Handler: a.handle})
	tp := d.Topics()

	// One command runs (blocked), 16 wait, the rest are busy.
	const n = 24
	for i := range n {
		o.send(t, tp, fmt.Sprintf(`{"id":"c%d","action":"status"}`, i))
	}
	o.waitFor(t, 0, 5*time.Second, "a busy reply", func(m message) bool {
		return m.topic == tp.Reply() && strings.Contains(m.payload, `"error":"busy"`)
	})
	close(a.block)
	var busy, ok int
	for i := range n {
		r := o.reply(t, tp, fmt.Sprintf("c%d", i))
		if r.OK {
			ok++
		} else if r.Error == "busy" {
			busy++
		}
	}
	if ok < 17 || ok+busy != n {
		t.Fatalf("%d ok, %d busy of %d", ok, busy, n)
	}
	// The ones that ran, ran in arrival order.
	a.mu.Lock()
	defer a.mu.Unlock()
	last := -1
	for _, c := range a.calls {
		var i int
		fmt.Sscanf(c.ID, "c%d", &i)
		if i <= last {
			t.Fatalf("ran %s after c%d", c.ID, last)
		}
		last = i
	}
}

func TestRetainedStatusAndState(t *testing.T) {
	eachBroker(t, func(t *testing.T, b testBroker) {
		_, d := newAgentDevice(t, b.Addr(), "cam2")
		tp := d.Topics()

		// A late observer gets both, retained.
		o := observe(t, b.Addr(), "cam2")
		o.waitFor(t, 0, 5*time.Second, "retained online", func(m message) bool { return is(tp.Status(), "online")(m) && m.retained })
		_, st := o.waitFor(t, 0, 5*time.Second, "retained idle state", func(m message) bool { return isState(tp.State(), "idle")(m) && m.retained })
		if !strings.Contains(st.payload, `"users":[]`) {
			t.Fatalf("state %s: want users []", st.payload)
		}

		if err := d.PublishEvent(control.Event{Event: control.EventUserJoined, UID: 9}); err != nil {
			t.Fatal(err)
		}
		o.waitFor(t, 0, 5*time.Second, "event", func(m message) bool {
			return m.topic == tp.Events() && strings.HasPrefix(m.payload, `{"event":"user-joined","uid":9,"time":"`)
		})

		// On shutdown: offline, retained, and the state stays.
		m := o.mark()
		d.stop(t)
		o.waitFor(t, m, 5*time.Second, "offline", is(tp.Status(), "offline"))
		if d.Connected() {
			t.Fatal("Connected after Run returned")
		}
		if err := d.PublishEvent(control.Event{Event: control.EventError}); !errors.Is(err, control.ErrNotConnected) {
			t.Fatalf("PublishEvent after Run: %v, want ErrNotConnected", err)
		}
		late := observe(t, b.Addr(), "cam2")
		late.waitFor(t, 0, 5*time.Second, "retained offline", func(m message) bool { return is(tp.Status(), "offline")(m) && m.retained })
		late.waitFor(t, 0, 5*time.Second, "retained state", func(m message) bool { return isState(tp.State(), "idle")(m) && m.retained })
	})
}

// TestWill cuts the device's connection under it: the broker announces the
// device offline (its will), and the device comes back by itself.
func TestWill(t *testing.T) {
	eachBroker(t, func(t *testing.T, b testBroker) {
		p := startProxy(t, b.Addr())
		o := observe(t, b.Addr(), "cam3")
		a := &fakeAgent{}
		d := startDevice(t, control.Options{URL: "tcp://" + p.Addr(), ID: "cam3", Handler: a.handle})
		tp := d.Topics()
		if err := d.PublishState(control.State{State: control.StateJoined, Channel: "c", Users: []uint32{1}}); err != nil {
			t.Fatal(err)
		}
		o.waitFor(t, 0, 5*time.Second, "online", is(tp.Status(), "online"))
		o.waitFor(t, 0, 5*time.Second, "joined", isState(tp.State(), "joined"))

		m := o.mark()
		p.cut()
		i, _ := o.waitFor(t, m, 5*time.Second, "offline (will)", is(tp.Status(), "offline"))
		i, _ = o.waitFor(t, i+1, 5*time.Second, "online again", is(tp.Status(), "online"))
		o.waitFor(t, i+1, 5*time.Second, "state again", isState(tp.State(), "joined"))

		// Commands work on the new connection.
		o.send(t, tp, `{"id":"after","action":"status"}`)
		o.reply(t, tp, "after")
	})
}

// TestBrokerRestart restarts the broker, which forgets retained messages:
// the device reconnects and publishes them again.
func TestBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the brokers: not in -short")
	}
	eachBroker(t, func(t *testing.T, b testBroker) {
		_, d := newAgentDevice(t, b.Addr(), "cam4")
		tp := d.Topics()
		if err := d.PublishState(control.State{State: control.StateJoined, Channel: "x", UID: 3}); err != nil {
			t.Fatal(err)
		}

		b.Stop(t)
		deadline := time.Now().Add(5 * time.Second)
		for d.Connected() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if d.Connected() {
			t.Fatal("still Connected 5 s after the broker stopped")
		}
		// State changes while disconnected are kept for the reconnect.
		if err := d.PublishState(control.State{State: control.StateIdle}); err != nil {
			t.Fatalf("PublishState while disconnected: %v", err)
		}
		time.Sleep(time.Second) // let a reconnect attempt or two fail
		b.Start(t)
		start := time.Now()

		o := observe(t, b.Addr(), "cam4")
		o.waitFor(t, 0, 5*time.Second, "online after restart", func(m message) bool { return is(tp.Status(), "online")(m) })
		o.waitFor(t, 0, 5*time.Second, "state after restart", isState(tp.State(), "idle"))
		t.Logf("back online %v after the broker restarted", time.Since(start).Round(time.Millisecond))
		if !d.Connected() {
			t.Fatal("not Connected after the broker came back")
		}
	})
}

func TestCredentialsNotLogged(t *testing.T) {
	b, err := brokerWithUsers(t, map[string]string{"cam": "pa55word"})
	if err != nil {
		t.Fatal(err)
	}
	var sink *logSink
	a := &fakeAgent{}
	d := startDevice(t, control.Options{
		URL: "tcp://cam:pa55word@" + b, ID: "cam5", Username: "cam", Password: "pa55word",
		Handler: a.handle, Logger: testLogger(t, &sink),
	})
	o := observeAuth(t, b, "cam5")
	o.send(t, d.Topics(), `{"id":"j","action":"join","channel":"c","uid":1,"token":"tok-SECRET"}`)
	o.reply(t, d.Topics(), "j")
	d.stop(t)
	logs := sink.String()
	for _, secret := range []string{"pa55word", "tok-SECRET"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{"component=control", "msg=connected", "msg=command component=control id=j action=join", "msg=disconnected"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestNew(t *testing.T) {
	h := func(context.Context, control.Command) (control.State, error) { return control.State{}, nil }
	for _, o := range []control.Options{
		{URL: "tcp://127.0.0.1:1", ID: "x"},                          // no handler
		{URL: "http://127.0.0.1:1", ID: "x", Handler: h},             // scheme
		{URL: "tcp://", ID: "x", Handler: h},                         // host
		{URL: "tcp://127.0.0.1:1", ID: "a/b", Handler: h},            // id
		{URL: "tcp://127.0.0.1:1", ID: "a+", Handler: h},             // id
		{URL: "tcp://127.0.0.1:1", ID: "a", Prefix: "#", Handler: h}, // prefix
	} {
		if _, err := control.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	for _, u := range []string{"tcp://h:1", "ssl://h:1", "tls://h:1", "ws://h:1/mqtt", "wss://h/mqtt"} {
		c, err := control.New(control.Options{URL: u, Handler: h})
		if err != nil {
			t.Errorf("New(%s): %v", u, err)
			continue
		}
		if c.Topics().ID == "" || c.Topics().Prefix != "camagent" {
			t.Errorf("defaults: %+v", c.Topics())
		}
	}
}

// TestNoGoroutineLeak runs clients through connect, reconnect and shutdown
// and checks that nothing is left running.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("run", func(t *testing.T) {
		e := startEmbedded(t)
		p := startProxy(t, e.Addr())
		a := &fakeAgent{}
		d := startDevice(t, control.Options{URL: "tcp://" + p.Addr(), ID: "leak", Handler: a.handle})
		o := observe(t, e.Addr(), "leak")
		o.send(t, d.Topics(), `{"id":"1","action":"status"}`)
		o.reply(t, d.Topics(), "1")
		m := o.mark()
		p.cut()
		o.waitFor(t, m, 5*time.Second, "online again", is(d.Topics().Status(), "online"))
		// A client that never reaches its broker also stops cleanly.
		c, err := control.New(control.Options{URL: "tcp://" + closedAddr(t), ID: "never", Handler: a.handle})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		if err := c.Run(ctx); err != nil {
			t.Fatal(err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
