package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/broker"
)

// testBroker is a broker the tests can stop and start again on the same
// address.
type testBroker interface {
	Addr() string // host:port
	Stop(t *testing.T)
	Start(t *testing.T)
}

// eachBroker runs f against the embedded broker and against mosquitto.
func eachBroker(t *testing.T, f func(t *testing.T, b testBroker)) {
	t.Run("embedded", func(t *testing.T) { f(t, startEmbedded(t)) })
	t.Run("mosquitto", func(t *testing.T) { f(t, startMosquitto(t)) })
}

type embedded struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startEmbedded(t *testing.T) *embedded {
	e := &embedded{addr: "127.0.0.1:0"}
	e.Start(t)
	t.Cleanup(func() { e.Stop(t) })
	return e
}

func (e *embedded) Addr() string { return e.addr }

func (e *embedded) Start(t *testing.T) {
	t.Helper()
	b, err := broker.New(broker.Options{TCPAddr: e.addr, AllowAnonymous: true, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
		e.addr = b.Addr()
	case err := <-e.done:
		t.Fatalf("embedded broker: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("embedded broker not ready after 5 s")
	}
}

func (e *embedded) Stop(t *testing.T) {
	t.Helper()
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		t.Errorf("embedded broker: %v", err)
	}
	e.cancel = nil
}

const mosquittoPath = "/usr/sbin/mosquitto"

type mosquitto struct {
	addr string
	conf string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// startMosquitto runs Debian's mosquitto on a free loopback port. It is a
// test dependency: missing, the test fails rather than skips.
func startMosquitto(t *testing.T) *mosquitto {
	t.Helper()
	if _, err := os.Stat(mosquittoPath); err != nil {
		t.Fatalf("mosquitto is needed for this test (%v): run `make test-deps`", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	text := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n", port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &mosquitto{addr: addr, conf: conf}
	m.Start(t)
	t.Cleanup(func() {
		m.Stop(t)
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log)
		}
	})
	return m
}

func (m *mosquitto) Addr() string { return m.addr }

func (m *mosquitto) Start(t *testing.T) {
	t.Helper()
	if m.log == nil {
		m.log = new(bytes.Buffer)
	}
	m.cmd = exec.Command(mosquittoPath, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening on %s after 5 s: %v\n%s", m.addr, err, m.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *mosquitto) Stop(t *testing.T) {
	t.Helper()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	_ = m.cmd.Wait()
	m.cmd = nil
}

// logSink collects log lines for t.Log and for inspection, and drops lines
// that arrive after the test has ended.
type logSink struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
	buf  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.buf.Write(p)
		s.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func testLogger(t *testing.T, sink **logSink) *slog.Logger {
	s := &logSink{t: t}
	t.Cleanup(func() { s.mu.Lock(); s.done = true; s.mu.Unlock() })
	if sink != nil {
		*sink = s
	}
	var w io.Writer = s
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// device runs a control.Client until the test ends (or stop is called).
type device struct {
	*control.Client
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop ends Run and waits for it; only the first call does anything.
func (d *device) stop(t *testing.T) {
	t.Helper()
	d.once.Do(func() { d.stopOnce(t) })
}

func (d *device) stopOnce(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return 10 s after its context ended")
	}
}

func startDevice(t *testing.T, opts control.Options) *device {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t, nil)
	}
	c, err := control.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &device{Client: c, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- c.Run(ctx) }()
	t.Cleanup(func() { d.stop(t) })
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("device not ready after 10 s")
	}
	if !c.Connected() {
		t.Fatal("Ready but not Connected")
	}
	return d
}

type message struct {
	topic    string
	payload  string
	retained bool
}

// observer is a paho client that records everything under camagent/<id>/.
type observer struct {
	c      paho.Client
	mu     sync.Mutex
	msgs   []message
	signal chan struct{} // closed and replaced on every message
}

func observe(t *testing.T, addr, id string) *observer {
	t.Helper()
	o := &observer{signal: make(chan struct{})}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID(fmt.Sprintf("observer-%d", time.Now().UnixNano())).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	o.c = paho.NewClient(opts)
	if err := waitTok(o.c.Connect()); err != nil {
		t.Fatalf("observer connect: %v", err)
	}
	t.Cleanup(func() { o.c.Disconnect(0) })
	if err := waitTok(o.c.Subscribe("camagent/"+id+"/#", 1, o.record)); err != nil {
		t.Fatalf("observer subscribe: %v", err)
	}
	return o
}

func waitTok(tok paho.Token) error {
	if !tok.WaitTimeout(5 * time.Second) {
		return errors.New("timed out")
	}
	return tok.Error()
}

// mark is the index the next message will have.
func (o *observer) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs)
}

// waitFor returns the index of the first message from index from on that
// satisfies match, waiting up to timeout for it.
func (o *observer) waitFor(t *testing.T, from int, timeout time.Duration, what string, match func(message) bool) (int, message) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		for i := from; i < len(o.msgs); i++ {
			if m := o.msgs[i]; match(m) {
				o.mu.Unlock()
				return i, m
			}
		}
		from = len(o.msgs)
		signal := o.signal
		o.mu.Unlock()
		select {
		case <-signal:
		case <-deadline.C:
			t.Fatalf("no %s within %v", what, timeout)
		}
	}
}

func (o *observer) all(topic string) []message {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []message
	for _, m := range o.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func (o *observer) send(t *testing.T, topics control.Topics, payload string) {
	t.Helper()
	if err := waitTok(o.c.Publish(topics.Cmd(), 1, false, payload)); err != nil {
		t.Fatalf("send command: %v", err)
	}
}

// reply waits for the reply with the given id.
func (o *observer) reply(t *testing.T, topics control.Topics, id string) control.Reply {
	t.Helper()
	var r control.Reply
	o.waitFor(t, 0, 5*time.Second, "reply "+id, func(m message) bool {
		if m.topic != topics.Reply() {
			return false
		}
		var got control.Reply
		if err := json.Unmarshal([]byte(m.payload), &got); err != nil {
			t.Fatalf("reply %q: %v", m.payload, err)
		}
		if got.ID == id {
			r = got
			return true
		}
		return false
	})
	return r
}

func (o *observer) repliesTo(topics control.Topics, id string) int {
	n := 0
	for _, m := range o.all(topics.Reply()) {
		var r control.Reply
		if json.Unmarshal([]byte(m.payload), &r) == nil && r.ID == id {
			n++
		}
	}
	return n
}

func is(topic, payload string) func(message) bool {
	return func(m message) bool { return m.topic == topic && m.payload == payload }
}

func isState(topic, state string) func(message) bool {
	return func(m message) bool {
		var s control.State
		return m.topic == topic && json.Unmarshal([]byte(m.payload), &s) == nil && s.State == state
	}
}

// proxy forwards TCP connections to a broker, and can cut them all as if
// the network had died (no DISCONNECT is sent).
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(out, in); out.Close() }()
		go func() { defer p.wg.Done(); io.Copy(in, out); in.Close() }()
	}
}

// cut closes every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// brokerWithUsers starts an embedded broker that requires a password.
func brokerWithUsers(t *testing.T, users map[string]string) (string, error) {
	b, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0", Users: users})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-b.Ready():
		return b.Addr(), nil
	case err := <-done:
		return "", err
	}
}

// observeAuth is observe for brokerWithUsers' first user "cam".
func observeAuth(t *testing.T, addr, id string) *observer {
	t.Helper()
	o := &observer{signal: make(chan struct{})}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("observer-auth").
		SetUsername("cam").SetPassword("pa55word").SetAutoReconnect(false)
	o.c = paho.NewClient(opts)
	if err := waitTok(o.c.Connect()); err != nil {
		t.Fatalf("observer connect: %v", err)
	}
	t.Cleanup(func() { o.c.Disconnect(0) })
	if err := waitTok(o.c.Subscribe("camagent/"+id+"/#", 1, o.record)); err != nil {
		t.Fatalf("observer subscribe: %v", err)
	}
	return o
}

func (o *observer) record(_ paho.Client, m paho.Message) {
	o.mu.Lock()
	o.msgs = append(o.msgs, message{m.Topic(), string(m.Payload()), m.Retained()})
	close(o.signal)
	o.signal = make(chan struct{})
	o.mu.Unlock()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
