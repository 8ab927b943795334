package natsconf_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/natsconf"
	"github.com/camagent/camagent/hub/natsconf/natstest"
)

// client is a plain MQTT client of the cluster (the hub's side, or an attacker).
type client struct {
	c    paho.Client
	mu   sync.Mutex
	msgs []string // "topic payload"
	got  chan struct{}
}

func dial(t *testing.T, addr, user, pass string) (*client, error) {
	t.Helper()
	cl := &client{got: make(chan struct{}, 100)}
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("%s-%d", user, time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(cl.record)
	cl.c = paho.NewClient(o)
	tok := cl.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect as %s: timed out", user)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect as %s: %w", user, err)
	}
	t.Cleanup(func() { cl.c.Disconnect(0) })
	return cl, nil
}

func (cl *client) record(_ paho.Client, m paho.Message) {
	cl.mu.Lock()
	cl.msgs = append(cl.msgs, m.Topic()+" "+string(m.Payload()))
	cl.mu.Unlock()
	select {
	case cl.got <- struct{}{}:
	default:
	}
}

// subscribe returns the SUBACK code of each filter (0x80: refused).
func (cl *client) subscribe(t *testing.T, filters ...string) map[string]byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := cl.c.SubscribeMultiple(m, cl.record)
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %v: %v", filters, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()
}

func (cl *client) publish(t *testing.T, topic string, retained bool, payload string) {
	t.Helper()
	tok := cl.c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("publish %s: timed out", topic)
	}
}

func (cl *client) messages() []string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]string(nil), cl.msgs...)
}

// reply is the reply to id on topic received so far, if any.
func (cl *client) reply(topic, id string) (control.Reply, bool) {
	for _, m := range cl.messages() {
		tp, payload, _ := strings.Cut(m, " ")
		var r control.Reply
		if tp == topic && json.Unmarshal([]byte(payload), &r) == nil && r.ID == id {
			return r, true
		}
	}
	return control.Reply{}, false
}

// waitReply waits for the reply to id on topic.
func (cl *client) waitReply(t *testing.T, topic, id string, timeout time.Duration) control.Reply {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if r, ok := cl.reply(topic, id); ok {
			return r
		}
		select {
		case <-cl.got:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no reply to %s on %s within %v; got %q", id, topic, timeout, cl.messages())
		}
	}
}

// identities are the test's hub account and two devices, with their bcrypt hashes.
func identities(t *testing.T) (natsconf.Options, map[string]string) {
	t.Helper()
	pass := map[string]string{"camhub": "hub-secret-0123456789", "cam1": "cam1-secret-0123456789", "cam2": "cam2-secret-0123456789",
		"k_ha": "key-secret-0123456789"}
	hashes := map[string]string{}
	for u, p := range pass {
		h, err := natsconf.Hash(p)
		if err != nil {
			t.Fatal(err)
		}
		hashes[u] = h
	}
	return natsconf.Options{Prefix: "camagent", HAPrefix: "homeassistant", HubUsers: []string{"camhub"},
		Devices: []string{"cam1", "cam2"}, Keys: []auth.Key{{ID: "k_ha", Name: "ha", Devices: []string{"cam2"}, MQTT: true}},
		Hashes: hashes}, pass
}

// TestClusterFailover: a device connected with its own credential through node A of a 3-node
// NATS cluster keeps answering commands after node A is killed, through B or C.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a NATS node and waits for the fail-over: not in -short")
	}
	o, pass := identities(t)
	conf, missing, err := natsconf.Config(o)
	if err != nil || len(missing) != 0 {
		t.Fatalf("Config: %v, missing %v", err, missing)
	}
	nodes := natstest.StartCluster(t, conf)
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.MQTTURL()
	}
	runs := newRuns()
	dev := runDevice(t, strings.Join(urls, ","), "cam1", pass["cam1"], runs.handler)
	if dev.Broker() != urls[0] {
		t.Fatalf("device on %s, want node A %s", dev.Broker(), urls[0])
	}
	tp := dev.Topics()
	hubc, err := dial(t, nodes[2].MQTT, "camhub", pass["camhub"])
	if err != nil {
		t.Fatal(err)
	}
	hubc.subscribe(t, tp.Reply())
	sent := time.Now()
	hubc.publish(t, tp.Cmd(), false, `{"id":"before","action":"status"}`)
	if r := hubc.waitReply(t, tp.Reply(), "before", 10*time.Second); !r.OK {
		t.Fatalf("reply before the kill: %+v", r)
	}
	t.Logf("command round trip through node A (device) and node C (hub): %v", time.Since(sent).Round(time.Millisecond))

	killed := time.Now()
	nodes[0].Kill()
	deadline := time.Now().Add(30 * time.Second)
	for !dev.Connected() || dev.Broker() == urls[0] {
		if time.Now().After(deadline) {
			t.Fatalf("device not reconnected 30 s after node A was killed (on %s, connected %v)", dev.Broker(), dev.Connected())
		}
		time.Sleep(20 * time.Millisecond)
	}
	reconnected := time.Since(killed)
	// Sent again every 2 s with the same id, as an app retries (the e2e test does too): a
	// publish that reaches a node while JetStream re-elects the leader of the stream it is
	// stored in is lost (nats-server logs a timeout on $MQTT.msgs). The device runs an id
	// once and answers a repeat from its cache: the count below still proves it ran once.
	sent = time.Now()
	for last := (time.Time{}); ; time.Sleep(50 * time.Millisecond) {
		if _, ok := hubc.reply(tp.Reply(), "after"); ok || time.Since(sent) > 13*time.Second {
			break
		}
		if time.Since(last) >= 2*time.Second {
			hubc.publish(t, tp.Cmd(), false, `{"id":"after","action":"status"}`)
			last = time.Now()
		}
	}
	if r := hubc.waitReply(t, tp.Reply(), "after", 15*time.Second-time.Since(sent)); !r.OK {
		t.Fatalf("reply after the kill: %+v", r)
	}
	t.Logf("node A killed: device reconnected to %s after %v; command answered %v after the kill (round trip %v)",
		dev.Broker(), reconnected.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	if ran := runs.counts(); ran["before"] != 1 || ran["after"] != 1 {
		t.Errorf("runs: %v, want each command once", ran)
	}
}

// runs counts the commands a device's handler ran, by id.
type runs struct {
	mu sync.Mutex
	n  map[string]int
}

func newRuns() *runs { return &runs{n: map[string]int{}} }

// handler is the device's Handler: it counts the command and reports idle.
func (r *runs) handler(_ context.Context, cmd control.Command) (control.State, error) {
	r.mu.Lock()
	r.n[cmd.ID]++
	r.mu.Unlock()
	return control.State{State: control.StateIdle}, nil
}

// counts returns how many times each command id ran so far.
func (r *runs) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.n)
}

// runDevice runs a device's control client, logged in as id, on the brokers of url until the
// test ends, and returns it once it is connected.
func runDevice(t *testing.T, url, id, password string, handler control.Handler) *control.Client {
	t.Helper()
	dev, err := control.New(control.Options{URL: url, ID: id, Username: id, Password: password, PublishQoS0: true, Handler: handler})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dev.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-dev.Ready():
	case <-time.After(20 * time.Second):
		t.Fatalf("device %s not connected to %s after 20 s", id, url)
	}
	return dev
}
