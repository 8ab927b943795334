package control_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/camagent/camagent/control"
)

// TestHomeAssistantDoc keeps docs/homeassistant.md true to what the device announces: its
// YAML parses, each entity id it names is announced (for the page's device "porch" with
// defaultChannel porch) and each announced entity is in its table; each payload passes the
// documented options of its entity type, names only the device's own topics, and carries a
// unique_id and the one device block; each command the page publishes parses.
func TestHomeAssistantDoc(t *testing.T) {
	b, err := os.ReadFile("../docs/homeassistant.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	tp := control.Topics{ID: "porch"}
	own := []string{tp.Status(), tp.State(), tp.Cmd(), tp.Reply(), tp.Events(), tp.Snapshot()}
	msgs := control.DiscoveryMessages(tp, control.HomeAssistant{Prefix: "homeassistant", Name: "Porch", DefaultChannel: "porch"}, "")
	announced := map[string]bool{}
	var device any
	for _, m := range msgs {
		var p map[string]any
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatalf("%s: %v", m.Topic, err)
		}
		component := strings.Split(m.Topic, "/")[1]
		checkHASchema(t, m.Topic, component, p)
		id, _ := p["default_entity_id"].(string)
		announced[id] = true
		if u, _ := p["unique_id"].(string); u == "" || !strings.HasPrefix(u, "camagent_porch_") {
			t.Errorf("%s: unique_id %q", m.Topic, p["unique_id"])
		}
		if device == nil {
			device = p["device"]
		} else if !equalJSON(device, p["device"]) {
			t.Errorf("%s: device block %v differs from %v", m.Topic, p["device"], device)
		}
		for k, v := range p {
			if k == "topic" || strings.HasSuffix(k, "_topic") {
				if s, _ := v.(string); !slices.Contains(own, s) {
					t.Errorf("%s: %s %q is not one of the device's topics", m.Topic, k, v)
				}
			}
		}
		if !strings.Contains(doc, "`"+id+"`") {
			t.Errorf("docs/homeassistant.md's table lacks %s", id)
		}
	}

	named := regexp.MustCompile(`\b(camera|switch|button|sensor|binary_sensor)\.camagent_[a-z0-9_]+`).FindAllString(doc, -1)
	if len(named) < len(msgs) {
		t.Fatalf("the page names %d entity ids", len(named))
	}
	for _, id := range named {
		if !announced[id] {
			t.Errorf("docs/homeassistant.md names %s, which the device does not announce", id)
		}
	}

	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) < 4 {
		t.Fatalf("%d YAML blocks", len(blocks))
	}
	published := 0
	for _, blk := range blocks {
		var v any
		if err := yaml.Unmarshal([]byte(blk[1]), &v); err != nil {
			t.Errorf("YAML block does not parse: %v\n%s", err, blk[1])
			continue
		}
		walk(v, func(m map[string]any) {
			if m["action"] != "mqtt.publish" {
				return
			}
			data, _ := m["data"].(map[string]any)
			payload, _ := data["payload"].(string)
			if _, err := control.ParseCommand([]byte(payload)); err != nil || data["topic"] != tp.Cmd() {
				t.Errorf("published %q on %v: %v", payload, data["topic"], err)
			}
			published++
		})
	}
	if published == 0 {
		t.Error("no mqtt.publish found in the page's YAML")
	}
	// The routes the page points at.
	for _, route := range []string{"/whep/devices/porch", "/api/camera_proxy/camera.camagent_porch_camera"} {
		if !strings.Contains(doc, route) {
			t.Errorf("the page lacks %s", route)
		}
	}
}

// walk calls f on every mapping in a decoded YAML document.
func walk(v any, f func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(v)
		for _, x := range v {
			walk(x, f)
		}
	case []any:
		for _, x := range v {
			walk(x, f)
		}
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
