package broker

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
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

// settled returns once the broker has delivered c's earlier publishes to their subscribers.
// mochi answers PUBACK before it fans a message out, so a client subscribing right after the
// PUBACK of a retained message may get it twice, retained and live; but it handles each
// client's packets in order, so once c's SUBSCRIBE to filter is acknowledged its earlier
// messages are out.
func settled(t *testing.T, c paho.Client, filter string) {
	t.Helper()
	subscribeCodes(t, c, filter)
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
	settled(t, hub, "camagent/porch/reply")

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
