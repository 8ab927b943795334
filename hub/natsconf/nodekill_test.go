package natsconf_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/directory"
	"github.com/camagent/camagent/hub/natsconf"
	"github.com/camagent/camagent/hub/natsconf/natstest"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestClusterNodeKills: a device answers commands sent by a hub's directory (hub/directory,
// as camhub sends them) through a 3-node cluster; the node the device is on is killed,
// commands are sent until one is answered, the node is started again, and again
// (NATS_KILLS times, default 2). Each kill prints a FAULT line: what the killed node led
// in JetStream, and when the first command after the kill was answered. No command runs twice.
func TestClusterNodeKills(t *testing.T) {
	if testing.Short() {
		t.Skip("kills NATS nodes and waits for the fail-overs: not in -short")
	}
	kills := 2
	if s := os.Getenv("NATS_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	o, pass := identities(t)
	conf, _, err := natsconf.Config(o)
	if err != nil {
		t.Fatal(err)
	}
	nodes := natstest.StartCluster(t, conf)
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.MQTTURL()
	}
	var log *slog.Logger
	if os.Getenv("NATSTEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	runs := newRuns()
	dev, err := control.New(control.Options{URL: strings.Join(urls, ","), ID: "cam1", Username: "cam1", Password: pass["cam1"],
		PublishQoS0: true, Handler: runs.handler, Logger: log}) // as docs/nats.md advises
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(2)
	go func() { defer wg.Done(); dev.Run(ctx) }()
	// The hub's side enters through the last node: a kill of the device's node (the first
	// in its list) leaves it connected.
	dir := directory.New(directory.Options{Broker: strings.Join([]string{urls[2], urls[1], urls[0]}, ","), Username: "camhub",
		Password: pass["camhub"], Logger: log})
	go func() { defer wg.Done(); dir.Run(ctx) }()
	answered := func(timeout time.Duration) (string, error) {
		r, err := dir.Command(ctx, "cam1", map[string]any{"action": "status"}, timeout)
		if err != nil {
			return "", err
		}
		var rep control.Reply
		if err := json.Unmarshal(r, &rep); err != nil || !rep.OK {
			return "", fmt.Errorf("reply %s: %v", r, err)
		}
		return rep.ID, nil
	}
	// A state, as the agent has: the device publishes it again, retained, at every connect.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := dev.PublishState(control.State{State: control.StateIdle}); err == nil && dev.Connected() {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no state published before the kills: %v", err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := answered(time.Second); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no command answered before the kills: %v", err)
		}
	}
	// The rest of a fleet: a client on every node, so that each node has set up its MQTT
	// state (JetStream consumers) before a kill, as it has when devices use every node.
	fleet := func(n *natstest.Node) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if _, err := dial(t, n.MQTT, "camhub", pass["camhub"]); err == nil {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("no client accepted by %s: %v", n.Name, err)
			}
		}
	}
	for _, n := range nodes {
		fleet(n)
	}
	var times []time.Duration
	var ids []string
	for k := range kills {
		var victim *natstest.Node
		for _, n := range nodes {
			if n.MQTTURL() == dev.Broker() && dev.Connected() && n.HasUser("cam1") {
				victim = n
			}
		}
		if victim == nil {
			t.Fatalf("the device is not connected to the node it names (%s; /connz)", dev.Broker())
		}
		leads, err := victim.Leads()
		if err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		victim.Kill()
		attempts := 0
		var back time.Duration
		for {
			attempts++
			if back == 0 && dev.Connected() && dev.Broker() != victim.MQTTURL() {
				back = time.Since(killed)
			}
			id, err := answered(500 * time.Millisecond)
			if err == nil {
				ids = append(ids, id)
				break
			}
			if time.Since(killed) > 60*time.Second {
				t.Fatalf("kill %d: no command answered 60 s after %s was killed: %v", k+1, victim.Name, err)
			}
			if !strings.Contains(err.Error(), "did not reply") {
				time.Sleep(100 * time.Millisecond) // not connected: the command was not sent
			}
		}
		took := time.Since(killed)
		times = append(times, took)
		if err := victim.Restart(); err != nil {
			t.Fatal(err)
		}
		fleet(victim)
		// The next kill comes once the device's connection is stable (10 s, control's
		// stableAfter): its back-off starts again from 0.5 s, as after a lone failure.
		time.Sleep(time.Until(killed.Add(took + 11*time.Second)))
		var living []*natstest.Node
		for _, n := range nodes {
			if n != victim {
				living = append(living, n)
			}
		}
		elected := natstest.Reelected(leads, killed, living)
		t.Logf("FAULT NATS node kill -9 %d/%d (%s, the device's; it led %v, re-elected after: %s): device connected to another node after %v, first command answered %v after the kill (%d attempts, 0.5 s each); device now on %s",
			k+1, kills, victim.Name, leads, elected, back.Round(time.Millisecond), took.Round(time.Millisecond), attempts, dev.Broker())
	}
	slices.Sort(times)
	t.Logf("FAULT NATS node kills: first command answered after %v (n = %d)", times, len(times))
	ran := runs.counts()
	for id, n := range ran {
		if n != 1 {
			t.Errorf("command %s ran %d times", id, n)
		}
	}
	for _, id := range ids {
		if ran[id] != 1 {
			t.Errorf("answered command %s ran %d times", id, ran[id])
		}
	}
}
