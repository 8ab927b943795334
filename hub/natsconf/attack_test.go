package natsconf_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/natsconf"
	"github.com/camagent/camagent/hub/natsconf/natstest"
)

// TestClusterIsolation: through the NATS cluster, a device (cam2, logged in with its own
// credential) cannot read another device's commands, state or retained topics, cannot command
// it, cannot overwrite its retained status, and cannot log in over the NATS protocol to
// subscribe to the JetStream delivery subjects; a key scoped to cam2 cannot reach cam1. Then
// checks nothing happened: cam1 ran only the hub's command, the attackers received nothing of
// cam1's, and cam1's retained status is still "online".
func TestClusterIsolation(t *testing.T) {
	o, pass := identities(t)
	conf, _, err := natsconf.Config(o)
	if err != nil {
		t.Fatal(err)
	}
	nodes := natstest.StartCluster(t, conf)
	var mu sync.Mutex
	var ran []string
	handler := func(_ context.Context, cmd control.Command) (control.State, error) {
		mu.Lock()
		ran = append(ran, cmd.ID)
		mu.Unlock()
		return control.State{State: control.StateIdle}, nil
	}
	dev := runDevice(t, nodes[0].MQTTURL(), "cam1", pass["cam1"], handler)
	tp := dev.Topics()

	// A device's login is refused with a wrong password or another device's name.
	if _, err := dial(t, nodes[1].MQTT, "cam1", pass["cam2"]); err == nil {
		t.Error("cam1 logged in with cam2's credential")
	}

	attackers := map[string]*client{}
	for _, who := range []string{"cam2", "k_ha"} {
		cl, err := dial(t, nodes[1].MQTT, who, pass[who])
		if err != nil {
			t.Fatal(err)
		}
		attackers[who] = cl
		codes := cl.subscribe(t, "camagent/cam1/#", tp.Cmd(), tp.State(), tp.Status(), "camagent/+/cmd", "#", "$MQTT/sub/#",
			"homeassistant/+/cam1/+/config")
		for f, code := range codes {
			if code != 0x80 {
				t.Errorf("%s: subscription to %s granted (code %#x)", who, f, code)
			}
		}
		cl.publish(t, tp.Cmd(), false, fmt.Sprintf(`{"id":"forged-%s","action":"leave"}`, who))
		cl.publish(t, tp.Status(), true, "offline")
		cl.publish(t, tp.State(), true, `{"state":"joined"}`)
	}
	// cam2 over the NATS protocol: refused before any subscription.
	if line := natsLogin(t, nodes[1].Client, "cam2", pass["cam2"]); !strings.Contains(line, "Authorization Violation") {
		t.Errorf("cam2 over the NATS protocol: %q, want an authorization violation", line)
	}

	// The hub's command still goes through, and is the only one cam1 runs.
	hubc, err := dial(t, nodes[2].MQTT, "camhub", pass["camhub"])
	if err != nil {
		t.Fatal(err)
	}
	hubc.subscribe(t, tp.Reply())
	hubc.publish(t, tp.Cmd(), false, `{"id":"hub","action":"status"}`)
	if r := hubc.waitReply(t, tp.Reply(), "hub", 10*time.Second); !r.OK {
		t.Fatalf("hub's command: %+v", r)
	}
	time.Sleep(500 * time.Millisecond) // a forged command would have arrived before the hub's
	mu.Lock()
	if len(ran) != 1 || ran[0] != "hub" {
		t.Errorf("cam1 ran %q, want only the hub's command", ran)
	}
	mu.Unlock()
	for who, cl := range attackers {
		if m := cl.messages(); len(m) != 0 {
			t.Errorf("%s received %q", who, m)
		}
	}
	watch, err := dial(t, nodes[1].MQTT, "camhub", pass["camhub"])
	if err != nil {
		t.Fatal(err)
	}
	watch.subscribe(t, tp.Status(), tp.State())
	select { // the retained status; cam1 publishes no state in this test, so none is retained
	case <-watch.got:
	case <-time.After(5 * time.Second):
		t.Fatal("no retained status of cam1")
	}
	time.Sleep(300 * time.Millisecond) // a forged retained state would come with it
	for _, m := range watch.messages() {
		if m != tp.Status()+" online" {
			t.Errorf("a forged retained message stuck: %q", m)
		}
	}
}

// natsLogin speaks the NATS text protocol: CONNECT as user, SUB to the JetStream delivery
// subjects, PING; it returns the server's first answer (+OK, PONG or -ERR).
func natsLogin(t *testing.T, addr, user, pass string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT {\"user\":%q,\"pass\":%q,\"verbose\":false,\"pedantic\":false}\r\nSUB $MQTT.sub.> 1\r\nPING\r\n", user, pass)
	line, _ := r.ReadString('\n')
	return strings.TrimSpace(line)
}
