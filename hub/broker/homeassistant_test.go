package broker

import (
	"testing"

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
