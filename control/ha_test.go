package control_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// TestTLSFiles checks the errors of the TLS helper.
func TestTLSFiles(t *testing.T) {
	pki := newTestPKI(t)
	for _, f := range []control.TLSFiles{
		{CAFile: "/nonexistent/ca.pem"},
		{CAFile: pki.ServerKey},                     // no certificate in it
		{CertFile: pki.ClientCert},                  // key missing
		{CertFile: pki.ClientCert, KeyFile: pki.CA}, // not a key
		{CertFile: pki.ClientCert, KeyFile: "/nonexistent"},
	} {
		if _, err := f.Config(); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
	cfg, err := control.TLSFiles{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "broker"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "broker" {
		t.Fatalf("config %+v", cfg)
	}
	if !(control.TLSFiles{}).Empty() || (control.TLSFiles{CAFile: "x"}).Empty() {
		t.Fatal("Empty")
	}
}

// TestSecret: with a device secret, commands without it or with a wrong
// one are refused "unauthorized" and run nothing; the right one runs.
func TestSecret(t *testing.T) {
	e := startEmbedded(t)
	var sink *logSink
	o := observe(t, e.Addr(), "cam-s")
	a, d := startFakeAgent(t, control.Options{URL: "tcp://" + e.Addr(), ID: "cam-s", Secret: "s3cr3t-value", Logger: testLogger(t, &sink)})
	tp := d.Topics()
	for _, p := range []string{
		`{"id":"a1","action":"join","channel":"c","uid":1}`,
		`{"id":"a2","action":"join","channel":"c","uid":1,"secret":"guess"}`,
		`{"id":"a3","action":"leave","secret":""}`,
	} {
		o.send(t, tp, p)
		id := p[7:9]
		if r := o.reply(t, tp, id); r.OK || r.Error != control.ErrUnauthorized || r.State == nil || r.State.State != "idle" {
			t.Fatalf("reply to %s: %+v", p, r)
		}
	}
	o.send(t, tp, `{"id":"a4","action":"join","channel":"c","uid":1,"secret":"s3cr3t-value"}`)
	if r := o.reply(t, tp, "a4"); !r.OK || r.State.State != "joined" {
		t.Fatalf("authorised join: %+v", r)
	}
	// An unauthorised command reusing a known id is refused, not answered
	// from the cache.
	o.send(t, tp, `{"id":"a4","action":"join","channel":"c","uid":1}`)
	o.waitFor(t, 0, 5*time.Second, "second reply to a4", func(m message) bool {
		return m.topic == tp.Reply() && strings.Contains(m.payload, `"id":"a4","ok":false,"error":"unauthorized"`)
	})
	if n := a.count("a4") + a.count("a1") + a.count("a2") + a.count("a3"); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	if strings.Contains(sink.String(), "s3cr3t-value") {
		t.Fatal("the secret is in the logs")
	}
}

// TestHomeAssistantDiscovery is done-when 4: the discovery messages carry
// what Home Assistant's MQTT integration requires, and pressing the
// entities sends commands the device runs.
func TestHomeAssistantDiscovery(t *testing.T) {
	eachBroker(t, func(t *testing.T, b testBroker) {
		const id = "front.door" // a dot is fine in a topic, not in a node id
		o := observe(t, b.Addr(), id)
		a, d := startFakeAgent(t, control.Options{URL: "tcp://" + b.Addr(), ID: id,
			HomeAssistant: control.HomeAssistant{Prefix: "homeassistant", Name: "Front door", DefaultChannel: "porch", SWVersion: "1.2.3"}})
		tp := d.Topics()
		o.waitFor(t, 0, 5*time.Second, "online", is(tp.Status(), "online"))
		// Subscribed after the device announced itself, as Home Assistant
		// starting later would: everything must come retained.
		disc := observeAs(t, b.Addr(), "", "", "homeassistant/#")
		want := len(control.DiscoveryMessages(tp, control.HomeAssistant{Prefix: "homeassistant", DefaultChannel: "porch"}, ""))
		if want < 11 {
			t.Fatalf("%d entities", want)
		}
		deadline := time.Now().Add(5 * time.Second)
		for disc.mark() < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		disc.mu.Lock()
		msgs := append([]message(nil), disc.msgs...)
		disc.mu.Unlock()
		if len(msgs) != want {
			t.Fatalf("%d discovery messages, want %d", len(msgs), want)
		}

		topicRE := regexp.MustCompile(`^homeassistant/(switch|button|sensor|binary_sensor|camera)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$`)
		uniq := map[string]bool{}
		byObject := map[string]map[string]any{}
		for _, m := range msgs {
			sub := topicRE.FindStringSubmatch(m.topic)
			if sub == nil {
				t.Fatalf("discovery topic %s does not have the form <prefix>/<component>/<node_id>/<object_id>/config", m.topic)
			}
			if !m.retained {
				t.Errorf("%s not retained: Home Assistant would lose it on restart", m.topic)
			}
			var p map[string]any
			if err := json.Unmarshal([]byte(m.payload), &p); err != nil {
				t.Fatalf("%s: %v", m.topic, err)
			}
			component, object := sub[1], sub[3]
			byObject[object] = p
			u, _ := p["unique_id"].(string)
			if u == "" || uniq[u] {
				t.Errorf("%s: unique_id %q missing or repeated", m.topic, u)
			}
			uniq[u] = true
			if de, _ := p["default_entity_id"].(string); !regexp.MustCompile(`^` + component + `\.[a-z0-9_]+$`).MatchString(de) {
				t.Errorf("%s: default_entity_id %q is not <domain>.<id>", m.topic, de)
			}
			dev, _ := p["device"].(map[string]any)
			ids, _ := dev["identifiers"].([]any)
			if len(ids) == 0 || dev["name"] != "Front door" || dev["sw_version"] != "1.2.3" {
				t.Errorf("%s: device block %v: needs identifiers, name", m.topic, dev)
			}
			if p["name"] == nil {
				t.Errorf("%s: no name", m.topic)
			}
			if object != "connectivity" {
				if p["availability_topic"] != tp.Status() || p["payload_available"] != "online" || p["payload_not_available"] != "offline" {
					t.Errorf("%s: availability %v %v %v", m.topic, p["availability_topic"], p["payload_available"], p["payload_not_available"])
				}
			}
			checkHASchema(t, m.topic, component, p)
			switch component {
			case "camera":
				if p["topic"] != tp.Snapshot() || p["image_encoding"] != nil {
					t.Errorf("%s: camera needs topic %s with raw JPEG payloads", m.topic, tp.Snapshot())
				}
			case "button":
				if p["command_topic"] != tp.Cmd() || p["payload_press"] == nil {
					t.Errorf("%s: button needs command_topic %s and payload_press", m.topic, tp.Cmd())
				}
			case "switch":
				if p["command_topic"] != tp.Cmd() || p["payload_on"] == nil || p["payload_off"] == nil || p["state_topic"] != tp.State() {
					t.Errorf("%s: switch needs command_topic, payload_on/off, state_topic", m.topic)
				}
			case "sensor", "binary_sensor":
				if st, _ := p["state_topic"].(string); st != tp.State() && st != tp.Status() {
					t.Errorf("%s: state_topic %q", m.topic, st)
				}
			}
			// Every command an entity sends must be a valid command, and
			// must carry no id: repeated presses would be taken for
			// redeliveries.
			for _, k := range []string{"payload_press", "payload_on", "payload_off"} {
				if s, ok := p[k].(string); ok && p["command_topic"] != nil {
					cmd, err := control.ParseCommand([]byte(s))
					if err != nil || cmd.ID != "" {
						t.Errorf("%s %s %q: %v (id %q)", m.topic, k, s, err, cmd.ID)
					}
				}
			}
		}
		for _, object := range []string{"call", "join", "leave", "state", "channel", "users", "connectivity", "camera", "take_snapshot", "privacy"} {
			if byObject[object] == nil {
				t.Errorf("no %s entity", object)
			}
		}
		if byObject["connectivity"]["entity_category"] != "diagnostic" {
			t.Error("connectivity is not a diagnostic entity")
		}
		if tpl, _ := byObject["users"]["value_template"].(string); !strings.Contains(tpl, "value_json.users | length") {
			t.Errorf("users template %q", tpl)
		}

		// Pressing Join twice, as Home Assistant would, then the switch off.
		press := func(object, key string) {
			t.Helper()
			if err := waitTok(o.c.Publish(byObject[object]["command_topic"].(string), 1, false, byObject[object][key].(string))); err != nil {
				t.Fatal(err)
			}
		}
		press("join", "payload_press")
		o.waitFor(t, 0, 5*time.Second, "joined", isState(tp.State(), "joined"))
		m := o.mark()
		press("call", "payload_off")
		o.waitFor(t, m, 5*time.Second, "idle", isState(tp.State(), "idle"))
		m = o.mark()
		press("join", "payload_press")
		o.waitFor(t, m, 5*time.Second, "joined again", isState(tp.State(), "joined"))
		if tpl, _ := byObject["privacy"]["value_template"].(string); !strings.Contains(tpl, "value_json.privacy") {
			t.Errorf("privacy template %q", tpl)
		}

		// The privacy switch on and off, and the snapshot button.
		m = o.mark()
		press("privacy", "payload_on")
		o.waitFor(t, m, 5*time.Second, "privacy on", func(msg message) bool {
			return msg.topic == tp.State() && strings.Contains(msg.payload, `"privacy":true`)
		})
		m = o.mark()
		press("privacy", "payload_off")
		o.waitFor(t, m, 5*time.Second, "privacy off", func(msg message) bool {
			return msg.topic == tp.State() && strings.Contains(msg.payload, `"privacy":false`)
		})
		m = o.mark()
		press("take_snapshot", "payload_press")
		o.waitFor(t, m, 5*time.Second, "snapshot reply", func(msg message) bool {
			return msg.topic == tp.Reply() && strings.Contains(msg.payload, `"snapshot":{"bytes":`)
		})
		// Home Assistant's camera, subscribing now, gets the picture retained.
		cam := observeAs(t, b.Addr(), "", "", byObject["camera"]["topic"].(string))
		cam.waitFor(t, 0, 5*time.Second, "retained snapshot", func(msg message) bool {
			return msg.retained && strings.HasPrefix(msg.payload, "\xff\xd8")
		})
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.calls) != 6 || a.calls[0].Channel != "porch" || a.calls[2].Action != "join" ||
			a.calls[3].Action != "privacy" || !*a.calls[3].On || *a.calls[4].On || a.calls[5].Action != "snapshot" {
			t.Fatalf("calls %+v", a.calls)
		}
	})
}

// haSchema lists, per entity type, the options Home Assistant's MQTT integration documents
// for discovery (www.home-assistant.io/integrations/<type>.mqtt/, "Configuration
// Variables") that these payloads may use, and the required ones. Home Assistant drops
// unknown options silently, so a misspelt one would only show as a broken entity.
var haSchema = map[string]struct{ required, optional []string }{
	"camera": {required: []string{"topic"},
		optional: []string{"image_encoding", "json_attributes_topic", "json_attributes_template"}},
	"button": {required: []string{"command_topic"},
		optional: []string{"payload_press", "command_template", "device_class", "qos", "retain", "entity_category"}},
	"switch": {required: []string{"command_topic"},
		optional: []string{"payload_on", "payload_off", "state_topic", "value_template", "state_on", "state_off",
			"optimistic", "qos", "retain", "device_class", "command_template", "entity_category"}},
	"sensor": {required: []string{"state_topic"},
		optional: []string{"value_template", "device_class", "state_class", "unit_of_measurement", "options",
			"json_attributes_topic", "json_attributes_template", "entity_category", "expire_after", "force_update",
			"qos", "suggested_display_precision", "last_reset_value_template"}},
	"binary_sensor": {required: []string{"state_topic"},
		optional: []string{"payload_on", "payload_off", "value_template", "device_class", "entity_category",
			"expire_after", "force_update", "off_delay", "qos", "json_attributes_topic"}},
}

// haCommon are the options every MQTT entity type documents.
var haCommon = []string{"name", "icon", "unique_id", "default_entity_id", "object_id", "device", "origin",
	"availability_topic", "payload_available", "payload_not_available", "availability_mode",
	"availability_template", "enabled_by_default", "entity_picture", "encoding"}

// checkHASchema checks one discovery payload against haSchema.
func checkHASchema(t *testing.T, topic, component string, p map[string]any) {
	t.Helper()
	sc, ok := haSchema[component]
	if !ok {
		t.Errorf("%s: no schema for entity type %s", topic, component)
		return
	}
	for _, k := range sc.required {
		if v, _ := p[k].(string); v == "" {
			t.Errorf("%s: required option %s missing", topic, k)
		}
	}
	for k := range p {
		if !slices.Contains(sc.required, k) && !slices.Contains(sc.optional, k) && !slices.Contains(haCommon, k) {
			t.Errorf("%s: option %q is not documented for MQTT %s entities", topic, k, component)
		}
	}
}
