package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// start runs a broker on a free loopback port until the test ends.
func start(t *testing.T, opts Options) *Broker {
	t.Helper()
	if opts.TCPAddr == "" {
		opts.TCPAddr = "127.0.0.1:0"
	}
	logs := &testLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("broker not ready after 5 s")
	}
	return b
}

// testLog keeps the broker's log for a failing test. (Not t.Log: mochi's event loop may still
// log a line after Run has returned, and the test with it.)
type testLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type message struct {
	topic    string
	payload  string
	retained bool
}

// client connects a paho client; msgs receives what it is subscribed to.
func client(t *testing.T, addr, id string, configure func(*paho.ClientOptions)) (paho.Client, chan message) {
	t.Helper()
	msgs := make(chan message, 16)
	o := paho.NewClientOptions().AddBroker(addr).SetClientID(id).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			msgs <- message{m.Topic(), string(m.Payload()), m.Retained()}
		})
	if configure != nil {
		configure(o)
	}
	c := paho.NewClient(o)
	if err := wait(c.Connect()); err != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, msgs
}

func wait(tok paho.Token) error {
	if !tok.WaitTimeout(5 * time.Second) {
		return errors.New("timed out")
	}
	return tok.Error()
}

func subscribe(t *testing.T, c paho.Client, filter string) {
	t.Helper()
	if err := wait(c.Subscribe(filter, 1, nil)); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

func expect(t *testing.T, msgs chan message, want message) {
	t.Helper()
	if got := next(t, msgs); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func next(t *testing.T, msgs chan message) message {
	t.Helper()
	select {
	case got := <-msgs:
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
	}
	return message{}
}

func TestRetainedAndWill(t *testing.T) {
	b := start(t, Options{AllowAnonymous: true})
	addr := "tcp://" + b.Addr()
	if !strings.HasPrefix(b.Addr(), "127.0.0.1:") || strings.HasSuffix(b.Addr(), ":0") {
		t.Fatalf("Addr() = %q, want the bound loopback address", b.Addr())
	}

	// The device publishes retained status and sets a will, over its own
	// connection so the test can cut it.
	var devConn net.Conn
	dev, _ := client(t, addr, "device", func(o *paho.ClientOptions) {
		o.SetBinaryWill("camagent/d1/status", []byte("offline"), 1, true)
		o.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", u.Host)
			devConn = c
			return c, err
		})
	})
	// An early subscriber: once it has the live message, the broker is done with the publish.
	// (mochi acknowledges a publish before fanning it out; a subscriber that arrives in between
	// gets it twice, retained and live, and in about 2 % of such runs then misses the next
	// message: a race inside mochi that this test is not about.)
	early, earlyMsgs := client(t, addr, "early", nil)
	subscribe(t, early, "camagent/+/status")
	if err := wait(dev.Publish("camagent/d1/status", 1, true, "online")); err != nil {
		t.Fatal(err)
	}
	for next(t, earlyMsgs) != (message{"camagent/d1/status", "online", false}) {
		// the retained copy: mochi may also hand the early subscriber the stored message
	}

	// A late subscriber gets the retained message.
	viewer, msgs := client(t, addr, "viewer", nil)
	subscribe(t, viewer, "camagent/+/status")
	expect(t, msgs, message{"camagent/d1/status", "online", true})
	// Live messages go through too. mochi acknowledges a publish before fanning it out, so a
	// subscriber that arrives in between may get "online" twice (retained and live): skip it.
	subscribe(t, viewer, "camagent/d1/events")
	if err := wait(dev.Publish("camagent/d1/events", 1, false, "hello")); err != nil {
		t.Fatal(err)
	}
	for {
		m := next(t, msgs)
		if m == (message{"camagent/d1/status", "online", false}) {
			continue
		}
		if want := (message{"camagent/d1/events", "hello", false}); m != want {
			t.Fatalf("got %+v, want %+v", m, want)
		}
		break
	}

	// The device dies without DISCONNECT: the broker publishes its will.
	devConn.Close()
	expect(t, msgs, message{"camagent/d1/status", "offline", false})

	// And the will was retained.
	late, lateMsgs := client(t, addr, "late", nil)
	subscribe(t, late, "camagent/d1/status")
	expect(t, lateMsgs, message{"camagent/d1/status", "offline", true})
}

func TestUsers(t *testing.T) {
	b := start(t, Options{Users: map[string]string{"hub": "s3cret"}})
	addr := "tcp://" + b.Addr()
	client(t, addr, "good", func(o *paho.ClientOptions) { o.SetUsername("hub").SetPassword("s3cret") })

	for name, pass := range map[string]string{"hub": "wrong", "": ""} {
		o := paho.NewClientOptions().AddBroker(addr).SetClientID("bad").SetUsername(name).SetPassword(pass).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		c := paho.NewClient(o)
		if err := wait(c.Connect()); err == nil {
			c.Disconnect(0)
			t.Errorf("user %q password %q: connected, want refused", name, pass)
		}
	}
}

func TestWebSocket(t *testing.T) {
	b := start(t, Options{WSAddr: "127.0.0.1:0", AllowAnonymous: true})
	if b.WSAddr() == "" || strings.HasSuffix(b.WSAddr(), ":0") {
		t.Fatalf("WSAddr() = %q", b.WSAddr())
	}
	ws, wsMsgs := client(t, "ws://"+b.WSAddr()+"/mqtt", "browser", nil)
	subscribe(t, ws, "camagent/#")
	tcp, _ := client(t, "tcp://"+b.Addr(), "device", nil)
	// Larger than one read buffer, to cross message boundaries.
	big := strings.Repeat("x", 70000)
	if err := wait(tcp.Publish("camagent/d1/state", 1, true, big)); err != nil {
		t.Fatal(err)
	}
	// The retained flag of this copy depends on a race inside mochi (whether the live fan-out or
	// the retained store delivers it first); topic and payload are what this test is about.
	if got := next(t, wsMsgs); got.topic != "camagent/d1/state" || got.payload != big {
		t.Fatalf("got %.80s on %s, want the 70 kB state", got.payload, got.topic)
	}
	if err := wait(ws.Publish("camagent/d1/cmd", 1, false, `{"action":"status"}`)); err != nil {
		t.Fatal(err)
	}
	// mochi may deliver the state a second time (live and retained): skip it.
	for {
		got := next(t, wsMsgs)
		if got.topic == "camagent/d1/state" {
			continue
		}
		if want := (message{"camagent/d1/cmd", `{"action":"status"}`, false}); got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
		break
	}
}

func TestListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := New(Options{TCPAddr: ln.Addr().String(), AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "broker: listen tcp") {
		t.Fatalf("Run on a busy port: %v, want a listen error", err)
	}
	if _, err := New(Options{Users: map[string]string{"u": ""}}); err == nil {
		t.Fatal("New accepted an empty password")
	}
}

// TestNoLeak checks that every goroutine of the broker and its clients ends
// with Run's context.
func TestNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			b := start(t, Options{WSAddr: "127.0.0.1:0", AllowAnonymous: true})
			c, _ := client(t, "tcp://"+b.Addr(), "a", nil)
			w, _ := client(t, "ws://"+b.WSAddr(), "b", nil)
			subscribe(t, c, "x")
			subscribe(t, w, "x")
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
