package broker

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/camagent/camagent/control"
)

// accounts is a test Authenticator: user → password and identity, revocable.
type accounts struct {
	mu    sync.Mutex
	users map[string]account
}

type account struct {
	password string
	id       Identity
}

func (a *accounts) AuthenticateMQTT(user, pass string, _ net.Addr) (Identity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.users[user]
	if !ok || acc.password != pass {
		return Identity{}, false
	}
	return acc.id, true
}

func (a *accounts) revoke(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.users, user)
}

// fleet is a broker with the hub's account and the test accounts: devices
// porch and garage, an integration on porch, one on every device.
func fleet(t *testing.T, opts Options) (*Broker, *accounts) {
	t.Helper()
	acc := &accounts{users: map[string]account{
		"porch":  {"cam_d_porch", Identity{Kind: KindDevice, Name: "porch"}},
		"garage": {"cam_d_garage", Identity{Kind: KindDevice, Name: "garage"}},
		"k1":     {"cam_k_1", Identity{Kind: KindIntegration, Name: "k1", Devices: []string{"porch"}}},
		"k2":     {"cam_k_2", Identity{Kind: KindIntegration, Name: "k2", Devices: []string{"*"}}},
	}}
	opts.Users = map[string]string{"camhub": "hub-secret"}
	opts.Auth = acc
	return start(t, opts), acc
}

var passwords = map[string]string{
	"camhub": "hub-secret", "porch": "cam_d_porch", "garage": "cam_d_garage", "k1": "cam_k_1", "k2": "cam_k_2",
}

// login connects as user with its password over TCP.
func login(t *testing.T, b *Broker, user string, configure func(*paho.ClientOptions)) (paho.Client, chan message) {
	t.Helper()
	return client(t, "tcp://"+b.Addr(), user+"-client", func(o *paho.ClientOptions) {
		o.SetUsername(user).SetPassword(passwords[user])
		if configure != nil {
			configure(o)
		}
	})
}

// subscribeCodes subscribes to each filter and returns the SUBACK codes.
func subscribeCodes(t *testing.T, c paho.Client, filters ...string) map[string]byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := c.SubscribeMultiple(m, nil)
	if err := wait(tok); err != nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return tok.(*paho.SubscribeToken).Result()
}

func publish(t *testing.T, c paho.Client, topic string, retained bool, payload string) {
	t.Helper()
	if err := wait(c.Publish(topic, 1, retained, payload)); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// only checks the next message is want, with nothing before it.
func only(t *testing.T, msgs chan message, want message) {
	t.Helper()
	if got := next(t, msgs); got != want {
		t.Fatalf("got %+v, want %+v (and nothing before it)", got, want)
	}
}

// empty checks nothing more arrived (call after a sentinel came in).
func empty(t *testing.T, msgs chan message) {
	t.Helper()
	select {
	case m := <-msgs:
		t.Fatalf("unexpected message %+v", m)
	default:
	}
}

func TestDeviceCannotReadAnotherDevicesCommands(t *testing.T) {
	b, _ := fleet(t, Options{})
	hub, _ := login(t, b, "camhub", nil)
	// A retained command, there before anyone subscribes.
	publish(t, hub, "camagent/porch/cmd", true, `{"id":"r","action":"status"}`)

	porch, porchMsgs := login(t, b, "porch", nil)
	if codes := subscribeCodes(t, porch, "camagent/porch/cmd"); codes["camagent/porch/cmd"] != 1 {
		t.Fatalf("porch's own cmd: SUBACK %v", codes)
	}
	only(t, porchMsgs, message{"camagent/porch/cmd", `{"id":"r","action":"status"}`, true})

	garage, garageMsgs := login(t, b, "garage", nil)
	attacks := []string{"camagent/porch/cmd", "camagent/+/cmd", "camagent/#", "#", "+/+/+", "camagent/porch/+",
		"$share/g/camagent/porch/cmd", "camagent/garage/#", "$SYS/#"}
	codes := subscribeCodes(t, garage, attacks...)
	for _, f := range attacks {
		if codes[f] != 0x80 {
			t.Errorf("garage subscribing %s: SUBACK code %#x, want 0x80 (failure)", f, codes[f])
		}
	}
	subscribe(t, garage, "camagent/garage/cmd")

	// The hub commands porch, then garage: garage must get its own only.
	publish(t, hub, "camagent/porch/cmd", false, `{"id":"1","action":"join","channel":"c","token":"secret-token"}`)
	publish(t, hub, "camagent/garage/cmd", false, `{"id":"2","action":"status"}`)
	only(t, porchMsgs, message{"camagent/porch/cmd", `{"id":"1","action":"join","channel":"c","token":"secret-token"}`, false})
	only(t, garageMsgs, message{"camagent/garage/cmd", `{"id":"2","action":"status"}`, false})
	empty(t, garageMsgs)
	if s := statsWhen(b, func(s Stats) bool { return !(s.RefusedACL < uint64(len(attacks))) }); s.RefusedACL < uint64(len(attacks)) {
		t.Errorf("stats %+v: want at least %d ACL refusals", s, len(attacks))
	}
}

func TestDeviceCannotWriteAnotherDevicesTopics(t *testing.T) {
	b, _ := fleet(t, Options{})
	hub, hubMsgs := login(t, b, "camhub", nil)
	subscribe(t, hub, "camagent/#")
	subscribe(t, hub, "homeassistant/#")

	porch, porchMsgs := login(t, b, "porch", nil)
	subscribe(t, porch, "camagent/porch/cmd")
	publish(t, porch, "camagent/porch/state", true, `{"state":"idle"}`)
	only(t, hubMsgs, message{"camagent/porch/state", `{"state":"idle"}`, false})

	garage, _ := login(t, b, "garage", nil)
	// Each attack is acknowledged (as Mosquitto does for MQTT 3.1.1) and dropped.
	evilDiscovery := `{"name":"Call","command_topic":"camagent/porch/cmd","payload_press":"{\"action\":\"join\",\"channel\":\"evil\"}"}`
	for _, a := range []struct{ topic, payload string }{
		{"camagent/porch/state", `{"state":"joined","channel":"fake"}`},
		{"camagent/porch/status", "offline"},
		{"camagent/porch/reply", `{"id":"1","ok":true}`},
		{"camagent/porch/events", `{"event":"user-joined"}`},
		{"camagent/porch/snapshot", "not a jpeg"},
		{"camagent/porch/cmd", `{"id":"x","action":"join","channel":"evil"}`}, // commanding another device
		{"camagent/garage/cmd", `{"id":"x","action":"leave"}`},                // commanding itself
		{"camagent/new-device/state", `{"state":"idle"}`},                     // a fake device
		{"homeassistant/sensor/porch/state/config", `{}`},                     // another device's discovery
		{"homeassistant/button/garage/leave/config", evilDiscovery},           // its own, pointing at porch
		{"homeassistant/status", "offline"},
	} {
		for _, retained := range []bool{false, true} {
			publish(t, garage, a.topic, retained, a.payload)
		}
	}
	// mochi drops a client's publish on a $ topic without an acknowledgement.
	garage.Publish("$SYS/broker/clients", 0, true, "0")
	if !garage.IsConnectionOpen() {
		t.Fatal("the refused publishes closed garage's connection")
	}
	// garage's own topics still work; the sentinel is the first thing anyone sees.
	publish(t, garage, "camagent/garage/state", true, `{"state":"idle"}`)
	only(t, hubMsgs, message{"camagent/garage/state", `{"state":"idle"}`, false})
	empty(t, porchMsgs)

	// Nothing was retained either: a late reader sees porch's real state only.
	late, lateMsgs := login(t, b, "k2", nil)
	subscribe(t, late, "camagent/porch/#")
	only(t, lateMsgs, message{"camagent/porch/state", `{"state":"idle"}`, true})
	publish(t, porch, "camagent/porch/events", false, `{"event":"sentinel"}`)
	only(t, lateMsgs, message{"camagent/porch/events", `{"event":"sentinel"}`, false})
	if s := statsWhen(b, func(s Stats) bool { return !(s.RefusedACL != 22) }); s.RefusedACL != 22 {
		t.Errorf("stats %+v: want 22 ACL refusals (11 topics, retained and not)", s)
	}
}

// TestAgentWithHomeAssistant runs the real device client as porch, with Home
// Assistant discovery, and an integration on porch that commands it.
func TestAgentWithHomeAssistant(t *testing.T) {
	b, _ := fleet(t, Options{})
	ha, haMsgs := login(t, b, "k1", nil)
	if codes := subscribeCodes(t, ha, "homeassistant/+/porch/+/config", "camagent/porch/#", "homeassistant/status"); codes["camagent/porch/#"] != 1 || codes["homeassistant/+/porch/+/config"] != 1 {
		t.Fatalf("integration on porch: SUBACK %v", codes)
	}
	if codes := subscribeCodes(t, ha, "camagent/+/state", "camagent/garage/state", "homeassistant/#"); codes["camagent/+/state"] != 0x80 || codes["camagent/garage/state"] != 0x80 || codes["homeassistant/#"] != 0x80 {
		t.Fatalf("integration on porch reading beyond it: SUBACK %v", codes)
	}

	dev, err := control.New(control.Options{
		URL: "tcp://" + b.Addr(), ID: "porch", Username: "porch", Password: "cam_d_porch",
		HomeAssistant: control.HomeAssistant{Prefix: "homeassistant", DefaultChannel: "porch-call"},
		Handler: func(_ context.Context, cmd control.Command) (control.State, error) {
			return control.State{State: control.StateIdle}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dev.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-dev.Ready():
	case err := <-done:
		t.Fatalf("device: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("device not connected after 10 s")
	}
	want := map[string]bool{}
	for _, d := range control.DiscoveryMessages(dev.Topics(), control.HomeAssistant{Prefix: "homeassistant", DefaultChannel: "porch-call"}, "") {
		want[d.Topic] = true
	}
	got := 0
	for got < len(want) {
		m := next(t, haMsgs)
		if want[m.topic] {
			got++
		}
	}
	publish(t, ha, "camagent/porch/cmd", false, `{"id":"ha-1","action":"status"}`)
	for {
		m := next(t, haMsgs)
		if m.topic == "camagent/porch/reply" {
			if !strings.Contains(m.payload, `"id":"ha-1"`) || !strings.Contains(m.payload, `"ok":true`) {
				t.Fatalf("reply %s", m.payload)
			}
			break
		}
	}
	// The integration on porch cannot command garage.
	garage, garageMsgs := login(t, b, "garage", nil)
	subscribe(t, garage, "camagent/garage/cmd")
	publish(t, ha, "camagent/garage/cmd", false, `{"id":"ha-2","action":"leave"}`)
	hub, _ := login(t, b, "camhub", nil)
	publish(t, hub, "camagent/garage/cmd", false, `{"id":"hub-1","action":"status"}`)
	only(t, garageMsgs, message{"camagent/garage/cmd", `{"id":"hub-1","action":"status"}`, false})
}

func TestRefusedLogins(t *testing.T) {
	b, _ := fleet(t, Options{})
	addr := "tcp://" + b.Addr()
	hub, hubMsgs := login(t, b, "camhub", nil)
	subscribe(t, hub, "camagent/#")

	for _, c := range []struct{ user, pass, will string }{
		{"porch", "wrong", ""},
		{"porch", "", ""},
		{"camhub", "wrong", ""},
		{"camhub", "cam_d_porch", ""},
		{"nobody", "x", ""},
		{"", "", ""}, // anonymous, not allowed here
		{"garage", "cam_d_garage", "camagent/porch/status"}, // a will on another device's topic
	} {
		o := paho.NewClientOptions().AddBroker(addr).SetClientID("attacker").SetUsername(c.user).SetPassword(c.pass).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
		if c.will != "" {
			o.SetWill(c.will, "offline", 1, true)
		}
		cl := paho.NewClient(o)
		if err := wait(cl.Connect()); err == nil {
			cl.Disconnect(0)
			t.Errorf("user %q password %q will %q: connected, want refused", c.user, c.pass, c.will)
		}
	}
	// A device's own will passes.
	porch, _ := login(t, b, "porch", func(o *paho.ClientOptions) { o.SetWill("camagent/porch/status", "offline", 1, true) })
	publish(t, porch, "camagent/porch/status", true, "online")
	// (The retain flag is not what this checks: mochi now and then forwards a retained publish
	// to a live subscriber with it set.)
	if got := next(t, hubMsgs); got.topic != "camagent/porch/status" || got.payload != "online" {
		t.Fatalf("got %+v, want porch's own status online (and nothing before it)", got)
	}
	if s := statsWhen(b, func(s Stats) bool { return !(s.RefusedAuth != 6 || s.RefusedACL != 1) }); s.RefusedAuth != 6 || s.RefusedACL != 1 {
		t.Errorf("stats %+v: want 6 refused logins and 1 refused will", s)
	}
}

// TestClientIDTakeover: a device cannot take another's client id (its session
// and subscriptions); the same identity can.
func TestClientIDTakeover(t *testing.T) {
	b, _ := fleet(t, Options{})
	porch, porchMsgs := client(t, "tcp://"+b.Addr(), "camagent-porch", func(o *paho.ClientOptions) {
		o.SetUsername("porch").SetPassword("cam_d_porch").SetCleanSession(false)
	})
	subscribe(t, porch, "camagent/porch/cmd")

	o := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("camagent-porch").
		SetUsername("garage").SetPassword("cam_d_garage").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	thief := paho.NewClient(o)
	if err := wait(thief.Connect()); err == nil {
		thief.Disconnect(0)
		t.Fatal("garage took over porch's client id")
	}
	hub, _ := login(t, b, "camhub", nil)
	publish(t, hub, "camagent/porch/cmd", false, "after")
	only(t, porchMsgs, message{"camagent/porch/cmd", "after", false})
	if !porch.IsConnectionOpen() {
		t.Fatal("porch was disconnected")
	}
}

// statsWhen waits up to 5 s for ok(b.Stats()) (the broker counts a
// connection's end after the client has seen it) and returns the last Stats.
func statsWhen(b *Broker, ok func(Stats) bool) Stats {
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := b.Stats()
		if ok(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allocated returns the bytes allocated (cumulatively) while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// rawSend dials the broker, writes p, then up to extra bytes more while the
// broker keeps reading, and reports whether the broker closed the socket.
func rawSend(t *testing.T, addr string, p []byte, extra int) (closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(p); err != nil {
		return true
	}
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < extra; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return true
		}
	}
	_, err = io.ReadAll(c) // EOF or a reset once the broker closes it
	return err == nil || !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// connectPacket is an MQTT 3.1.1 CONNECT for user and password.
func connectPacket(clientID, user, pass string) []byte {
	var body bytes.Buffer
	str := func(s string) { body.WriteByte(byte(len(s) >> 8)); body.WriteByte(byte(len(s))); body.WriteString(s) }
	str("MQTT")
	body.WriteByte(4)    // 3.1.1
	body.WriteByte(0xc2) // user name, password, clean session
	body.Write([]byte{0, 30})
	str(clientID)
	str(user)
	str(pass)
	return append(append([]byte{0x10}, varint(body.Len())...), body.Bytes()...)
}

func varint(n int) []byte {
	var out []byte
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

func TestOversizedPackets(t *testing.T) {
	b, _ := fleet(t, Options{MaxPacketSize: 64 << 10})
	hub, hubMsgs := login(t, b, "camhub", nil)
	subscribe(t, hub, "camagent/#")

	// A CONNECT announcing 256 MiB (the largest length MQTT can say), then
	// 1 MiB of it; and the same after an authenticated CONNECT, as a PUBLISH.
	huge := []byte{0x10, 0xff, 0xff, 0xff, 0x7f}
	hugePublish := append(connectPacket("porch-big", "porch", "cam_d_porch"), 0x30, 0xff, 0xff, 0xff, 0x7f)
	// Just over the pre-authentication CONNECT limit, and just over MaxPacketSize.
	bigConnect := append([]byte{0x10}, varint(maxConnectSize+1)...)
	bigPublish := append(connectPacket("porch-big2", "porch", "cam_d_porch"), append([]byte{0x30}, varint(64<<10)...)...)

	var closed [4]bool
	n := allocated(func() {
		for range 5 {
			closed[0] = rawSend(t, b.Addr(), huge, 1<<20)
			closed[1] = rawSend(t, b.Addr(), hugePublish, 1<<20)
		}
		closed[2] = rawSend(t, b.Addr(), bigConnect, 64<<10)
		closed[3] = rawSend(t, b.Addr(), bigPublish, 128<<10)
	})
	for i, c := range closed {
		if !c {
			t.Errorf("attack %d: the broker kept the socket open", i)
		}
	}
	t.Logf("allocated %.1f MB in the process during 12 oversized packets (each announced up to 256 MiB)", float64(n)/1e6)
	if n > 8<<20 {
		t.Errorf("the process allocated %d bytes during the attacks, want a few MB at most", n)
	}
	if s := statsWhen(b, func(s Stats) bool { return !(s.Oversize != 12) }); s.Oversize != 12 {
		t.Errorf("stats %+v, want 12 oversize", s)
	}

	// Legitimate traffic: a message just under the limit passes.
	porch, _ := login(t, b, "porch", nil)
	big := strings.Repeat("j", 60<<10)
	publish(t, porch, "camagent/porch/snapshot", false, big)
	if m := next(t, hubMsgs); m.topic != "camagent/porch/snapshot" || m.payload != big {
		t.Fatalf("got %.40s on %s", m.payload, m.topic)
	}
}

func TestConnectTimeout(t *testing.T) {
	b, _ := fleet(t, Options{ConnectTimeout: 300 * time.Millisecond})
	// A silent socket, and one that sends its CONNECT a byte at a time, too slowly.
	silent, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	drip, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer drip.Close()
	go func() {
		for _, x := range connectPacket("drip", "porch", "cam_d_porch") {
			if _, err := drip.Write([]byte{x}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	for name, c := range map[string]net.Conn{"silent": silent, "drip": drip} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(c)
		if err != nil && isTimeout(err) {
			t.Errorf("%s socket still open after 10 s", name)
		}
	}
	if s := statsWhen(b, func(s Stats) bool { return !(s.Timeouts != 2) }); s.Timeouts != 2 {
		t.Errorf("stats %+v, want 2 timeouts", s)
	}
	// A real client connects, and an idle authenticated client outlives the
	// CONNECT timeout (its keep-alive governs it now).
	porch, porchMsgs := login(t, b, "porch", nil)
	subscribe(t, porch, "camagent/porch/cmd")
	time.Sleep(600 * time.Millisecond)
	hub, _ := login(t, b, "camhub", nil)
	publish(t, hub, "camagent/porch/cmd", false, "still here")
	only(t, porchMsgs, message{"camagent/porch/cmd", "still here", false})
}

func TestConnectionLimits(t *testing.T) {
	b, _ := fleet(t, Options{MaxPerAddress: 3, MaxClients: 5})
	// Three idle sockets from 127.0.0.1 fill its share.
	for range 3 {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if !rawSend(t, b.Addr(), connectPacket("fourth", "porch", "cam_d_porch"), 0) {
		t.Fatal("a fourth socket from the same address stayed open")
	}
	// Another address still gets in, until the total is reached.
	from := func(ip string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) {
			o.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
				return d.Dial("tcp", u.Host)
			})
		}
	}
	hub, _ := login(t, b, "camhub", from("127.0.0.2"))
	porch, porchMsgs := login(t, b, "porch", from("127.0.0.2"))
	subscribe(t, porch, "camagent/porch/cmd")
	o := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("sixth").SetUsername("garage").
		SetPassword("cam_d_garage").SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	from("127.0.0.3")(o)
	sixth := paho.NewClient(o)
	if err := wait(sixth.Connect()); err == nil {
		sixth.Disconnect(0)
		t.Fatal("a sixth socket got in over MaxClients 5")
	}
	publish(t, hub, "camagent/porch/cmd", false, "ok")
	only(t, porchMsgs, message{"camagent/porch/cmd", "ok", false})
	if s := statsWhen(b, func(s Stats) bool { return !(s.RefusedLimit != 2) }); s.RefusedLimit != 2 {
		t.Errorf("stats %+v, want 2 refused at the limit", s)
	}
}

func TestWebSocketOrigin(t *testing.T) {
	b, _ := fleet(t, Options{WSAddr: "127.0.0.1:0", AllowedOrigins: []string{"https://hub.example:8443"}})
	wsURL := "ws://" + b.WSAddr() + "/mqtt"
	hub, _ := login(t, b, "camhub", nil)

	for _, origin := range []string{"https://evil.example", "http://127.0.0.1:8080", "null", "https://hub.example:8443.evil.example"} {
		h := http.Header{"Origin": {origin}}
		h.Set("Sec-WebSocket-Protocol", "mqtt")
		ws, resp, err := websocket.DefaultDialer.Dial(wsURL, h)
		if err == nil {
			ws.Close()
			t.Errorf("Origin %s: upgraded", origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %s: %v, want 403", origin, err)
		}
	}
	// The allowed Origin upgrades; a client without an Origin works end to end.
	h := http.Header{"Origin": {"https://hub.example:8443"}}
	ws, _, err := (&websocket.Dialer{Subprotocols: []string{"mqtt"}}).Dial(wsURL, h)
	if err != nil {
		t.Fatalf("allowed Origin: %v", err)
	}
	ws.Close()
	k2, msgs := client(t, wsURL, "k2-ws", func(o *paho.ClientOptions) { o.SetUsername("k2").SetPassword("cam_k_2") })
	subscribe(t, k2, "camagent/+/state")
	publish(t, hub, "camagent/porch/state", false, "x")
	only(t, msgs, message{"camagent/porch/state", "x", false})
	if s := statsWhen(b, func(s Stats) bool { return !(s.RefusedOrigin != 4) }); s.RefusedOrigin != 4 {
		t.Errorf("stats %+v, want 4 refused Origins", s)
	}
}

func TestRevocation(t *testing.T) {
	b, acc := fleet(t, Options{})
	hub, hubMsgs := login(t, b, "camhub", nil)
	subscribe(t, hub, "camagent/+/status")
	lost := make(chan error, 1)
	porch, _ := client(t, "tcp://"+b.Addr(), "camagent-porch", func(o *paho.ClientOptions) {
		o.SetUsername("porch").SetPassword("cam_d_porch").SetCleanSession(false).
			SetWill("camagent/porch/status", "offline", 1, true).
			SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	})
	subscribe(t, porch, "camagent/porch/cmd")
	garage, garageMsgs := login(t, b, "garage", nil)
	subscribe(t, garage, "camagent/garage/cmd")

	acc.revoke("porch")
	b.Disconnect("porch")
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("porch still connected 5 s after Disconnect")
	}
	// (retained or not: mochi's fan-out and retained store race)
	if m := next(t, hubMsgs); m.topic != "camagent/porch/status" || m.payload != "offline" {
		t.Fatalf("got %+v, want porch's will", m)
	}
	// It cannot come back, and its persistent session is gone.
	o := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("camagent-porch").
		SetUsername("porch").SetPassword("cam_d_porch").SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	again := paho.NewClient(o)
	if err := wait(again.Connect()); err == nil {
		again.Disconnect(0)
		t.Fatal("revoked porch connected again")
	}
	if _, ok := b.server().Clients.Get("camagent-porch"); ok {
		t.Error("porch's persistent session is still held")
	}
	// Others are untouched.
	publish(t, hub, "camagent/garage/cmd", false, "hello")
	only(t, garageMsgs, message{"camagent/garage/cmd", "hello", false})
}

// TestAnonymousBesideAccounts: with AllowAnonymous and accounts, a client
// without a user name is let in, one with wrong credentials is not.
func TestAnonymousBesideAccounts(t *testing.T) {
	b, _ := fleet(t, Options{AllowAnonymous: true})
	anon, msgs := client(t, "tcp://"+b.Addr(), "anon", nil)
	subscribe(t, anon, "#")
	o := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("bad").SetUsername("porch").
		SetPassword("wrong").SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	if c := paho.NewClient(o); wait(c.Connect()) == nil {
		c.Disconnect(0)
		t.Fatal("a wrong password got in beside anonymous access")
	}
	porch, _ := login(t, b, "porch", nil)
	publish(t, porch, "camagent/porch/state", false, "s")
	only(t, msgs, message{"camagent/porch/state", "s", false})
}
