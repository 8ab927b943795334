package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/token"
)

// recorder is an HTTP listener on loopback that records every connection and request made
// to it: the place a malicious join would send the device.
type recorder struct {
	url   string
	mu    sync.Mutex
	conns int
	reqs  []string // method, path, Authorization
}

type countingListener struct {
	net.Listener
	r *recorder
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.r.mu.Lock()
		l.r.conns++
		l.r.mu.Unlock()
	}
	return c, err
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err, "recorder listen")
	r := &recorder{url: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+" Authorization="+req.Header.Get("Authorization"))
		r.mu.Unlock()
		http.Error(w, "recorded", http.StatusTeapot)
	})}
	go srv.Serve(countingListener{ln, r})
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *recorder) seen() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, slices.Clone(r.reqs)
}

// startPlainHub runs a hub with its own embedded broker on free loopback ports.
func startPlainHub(t *testing.T) *hub.Hub {
	t.Helper()
	hcfg := hub.Defaults()
	hcfg.Listen, hcfg.MQTTListen = "127.0.0.1:0", "127.0.0.1:0"
	hcfg.StateDir = filepath.Join(t.TempDir(), "hub2")
	h, err := hub.New(hcfg, testLogger(t))
	must(t, err, "second hub")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-done:
		t.Fatalf("second hub: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("second hub did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("second hub did not stop within 10 s")
		}
	})
	return h
}

// TestJoinServerIsAConfiguredHub attacks the device the way the issue did: over MQTT, a join
// whose "server" names a listener of the attacker's. Every such join is refused with
// ok:false and the precise error, the listener receives nothing at all (no connection, so no
// request and no Authorization header with the device's key), and the device stays in its
// call on its hub. In the same run a join naming the configured second hub (spelled
// differently) works, and so does the way back; an oversized command is refused and the
// device goes on serving.
func TestJoinServerIsAConfiguredHub(t *testing.T) {
	evil := startRecorder(t)
	hub2 := startPlainHub(t)
	hub2URL := "http://" + hub2.Addr()
	const key = "cam_d_0a1b2c3d_q8Zr0sVHXc9yAtHbm3v5Wn2lK7pD1fGeJ4uI6oR8sT0" // what must not leak
	s := startSystemWith(t, func(c *agent.Config) {
		c.Hubs = []string{hub2URL}
		c.HubKey = key
	})
	dev := s.agentCfg.ID
	uid := s.agentCfg.DefaultUID()
	w := watchDevice(t, s.hub.BrokerURL(), dev)
	stateTopic := "camagent/" + dev + "/state"

	tok1 := s.mint("home", uid, token.RolePublisher, time.Hour, time.Now())
	w.send(t, dev, fmt.Sprintf(`{"id":"j1","action":"join","channel":"home","token":%q}`, tok1))
	if r := w.reply(t, dev, "j1", 20*time.Second); !r.OK || r.State == nil || r.State.State != "joined" {
		t.Fatalf("join home: %+v", r)
	}
	inChannel := func(h *hub.Hub, channel string) bool {
		return slices.Contains(h.SFU().ChannelUsers("demo", channel), uid)
	}
	if !inChannel(s.hub, "home") {
		t.Fatal("the device is not in its channel on its hub")
	}

	_, evilPort, _ := net.SplitHostPort(strings.TrimPrefix(evil.url, "http://"))
	attacks := []struct{ name, server, extra string }{
		{"foreign listener, no token (the device would ask it for one with its key)", evil.url, ""},
		{"foreign listener, a valid token", evil.url, fmt.Sprintf(`,"token":%q`, tok1)},
		{"foreign listener named localhost", "http://localhost:" + evilPort, ""},
		{"foreign listener over https", "https://127.0.0.1:" + evilPort, ""},
		{"foreign listener behind the hub's URL as user info", "http://" + s.hub.Addr() + "@127.0.0.1:" + evilPort, ""},
		{"the hub's host with the listener's port", "http://127.0.0.1:" + evilPort + "/", ""},
		{"the hub with another path", s.baseURL + "/elsewhere", ""},
		{"the hub over wss", "wss://" + s.hub.Addr(), ""},
		{"not a URL", "127.0.0.1:" + evilPort, ""},
	}
	states := len(w.msgsOn(stateTopic))
	for i, a := range attacks {
		id := fmt.Sprintf("evil%d", i)
		w.send(t, dev, fmt.Sprintf(`{"id":%q,"action":"join","channel":"exfil","server":%q%s}`, id, a.server, a.extra))
		r := w.reply(t, dev, id, 10*time.Second)
		want := fmt.Sprintf("server %q is not one of this device's configured hubs (hub, hubs)", agent.RedactURL(a.server))
		if r.OK || r.Error != want {
			t.Errorf("%s: reply %+v, want ok:false %q", a.name, r, want)
		}
		if r.State == nil || r.State.State != "joined" || r.State.Channel != "home" {
			t.Errorf("%s: state in the reply %+v, want joined home", a.name, r.State)
		}
	}
	// A status round trip orders everything before it.
	w.send(t, dev, `{"id":"st1","action":"status"}`)
	if r := w.reply(t, dev, "st1", 10*time.Second); !r.OK || r.State.State != "joined" || r.State.Channel != "home" {
		t.Fatalf("status after the attacks: %+v", r)
	}
	if conns, reqs := evil.seen(); conns != 0 || len(reqs) != 0 {
		t.Fatalf("the foreign listener got %d connections and requests %q", conns, reqs)
	}
	if n := len(w.msgsOn(stateTopic)) - states; n != 0 {
		t.Errorf("%d state changes during the refused joins, want none", n)
	}
	if !inChannel(s.hub, "home") || len(s.hub.SFU().ChannelUsers("demo", "exfil")) != 0 {
		t.Fatal("the refused joins moved the device")
	}
	t.Logf("%d joins naming foreign servers refused; the listener saw nothing", len(attacks))

	// The configured second hub, spelled otherwise: an upper-case scheme, a trailing slash.
	tok2, _, err := token.Mint("demo", mustCert(t, hub2), "second", uid, token.RolePublisher, time.Hour, time.Now())
	must(t, err, "mint on the second hub")
	w.send(t, dev, fmt.Sprintf(`{"id":"j2","action":"join","channel":"second","server":%q,"token":%q}`,
		"HTTP://"+hub2.Addr()+"/", tok2))
	if r := w.reply(t, dev, "j2", 20*time.Second); !r.OK || r.State.State != "joined" || r.State.Channel != "second" {
		t.Fatalf("join on the second hub: %+v", r)
	}
	if !inChannel(hub2, "second") || inChannel(s.hub, "home") {
		t.Fatalf("after the switch: second hub %v, first hub %v", hub2.SFU().ChannelUsers("demo", "second"), s.hub.SFU().ChannelUsers("demo", "home"))
	}
	// And back, naming the first hub.
	w.send(t, dev, fmt.Sprintf(`{"id":"j3","action":"join","channel":"home","server":%q,"token":%q}`, s.baseURL, tok1))
	if r := w.reply(t, dev, "j3", 20*time.Second); !r.OK || r.State.Channel != "home" || !inChannel(s.hub, "home") {
		t.Fatalf("join back on the first hub: %+v", r)
	}

	// An oversized command: refused before parsing, with an empty id; the device goes on.
	big := `{"id":"big","action":"join","channel":"exfil","server":"` + evil.url + `","pad":"` + strings.Repeat("x", 40<<10) + `"}`
	m := w.mark()
	w.send(t, dev, big)
	_, msg := w.wait(t, m, 10*time.Second, "reply to the oversized command", func(m mqMsg) bool { return m.topic == "camagent/"+dev+"/reply" })
	if !strings.HasPrefix(msg.payload, fmt.Sprintf(`{"id":"","ok":false,"error":"command is %d bytes, more than the %d allowed"`, len(big), control.MaxCommandSize)) {
		t.Fatalf("reply to the oversized command: %.200s", msg.payload)
	}
	w.send(t, dev, `{"id":"st2","action":"status"}`)
	if r := w.reply(t, dev, "st2", 10*time.Second); !r.OK || r.State.Channel != "home" {
		t.Fatalf("status after the oversized command: %+v", r)
	}
	if conns, reqs := evil.seen(); conns != 0 || len(reqs) != 0 {
		t.Fatalf("the foreign listener got %d connections and requests %q", conns, reqs)
	}
}

func mustCert(t *testing.T, h *hub.Hub) string {
	t.Helper()
	cert, ok := h.Certificate("demo")
	if !ok {
		t.Fatal("no certificate for the demo App")
	}
	return cert
}

// mark is the index the next message will have.
func (w *mqWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.msgs)
}

func (w *mqWatch) msgsOn(topic string) []mqMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []mqMsg
	for _, m := range w.msgs {
		if m.topic == topic {
			out = append(out, m)
		}
	}
	return out
}
