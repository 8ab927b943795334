package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/control"
)

// TestHomeAssistantDiscoveryFilters: Home Assistant subscribes to discovery with
// <prefix>/+/+/config and <prefix>/+/+/+/config whatever it may read. Logged in with a key
// scoped to porch it gets those subscriptions and, retained and live, porch's discovery
// messages and never garage's (as Mosquitto's ACL file does it); any other wide filter is
// still refused.
func TestHomeAssistantDiscoveryFilters(t *testing.T) {
	b, _ := fleet(t, Options{})
	discovery := map[string][]control.Discovery{}
	devices := map[string]paho.Client{}
	for _, id := range []string{"porch", "garage"} {
		c, _ := login(t, b, id, nil)
		devices[id] = c
		discovery[id] = control.DiscoveryMessages(control.Topics{ID: id}, control.HomeAssistant{Prefix: "homeassistant", DefaultChannel: "x"}, "")
		for _, d := range discovery[id] {
			publish(t, c, d.Topic, true, string(d.Payload))
		}
		settled(t, c, "camagent/"+id+"/cmd")
	}
	filters := []string{"homeassistant/+/+/config", "homeassistant/+/+/+/config"}
	ha, msgs := login(t, b, "k1", nil)
	wide := []string{"homeassistant/#", "homeassistant/+/garage/+/config", "homeassistant/+/+/+/+", "+/+/+/+/config", "homeassistant/+/+/+/config/#"}
	// Before the filters: mochi answers 0x91 to a SUBSCRIBE while its QoS 1 deliveries
	// hold the same packet ids.
	codes := subscribeCodes(t, ha, wide...)
	for _, f := range wide {
		if codes[f] != 0x80 {
			t.Errorf("the key on porch subscribing %s: SUBACK %#x, want 0x80", f, codes[f])
		}
	}
	for f, code := range subscribeCodes(t, ha, filters...) {
		if code != 1 {
			t.Fatalf("Home Assistant's discovery filter %s: SUBACK %#x", f, code)
		}
	}
	want := map[string]bool{}
	for _, d := range discovery["porch"] {
		want[d.Topic] = true
	}
	for range want {
		if m := next(t, msgs); !want[m.topic] || !m.retained {
			t.Fatalf("the key on porch got %s (retained %v)", m.topic, m.retained)
		}
	}
	// Live: garage's messages are not delivered, porch's are.
	garage, porch := discovery["garage"][0], discovery["porch"][0]
	publish(t, devices["garage"], garage.Topic, true, string(garage.Payload))
	publish(t, devices["porch"], porch.Topic, true, string(porch.Payload))
	only(t, msgs, message{porch.Topic, string(porch.Payload), false})
	empty(t, msgs)
	settled(t, devices["garage"], "camagent/garage/cmd")
	settled(t, devices["porch"], "camagent/porch/cmd")

	// A key on every device discovers both.
	all, allMsgs := login(t, b, "k2", nil)
	subscribeCodes(t, all, filters...)
	seen := map[string]bool{}
	for range len(discovery["porch"]) + len(discovery["garage"]) {
		seen[next(t, allMsgs).topic] = true
	}
	if len(seen) != len(discovery["porch"])+len(discovery["garage"]) {
		t.Errorf("the key on every device discovered %d entities, want %d", len(seen), len(discovery["porch"])+len(discovery["garage"]))
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
