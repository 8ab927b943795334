package broker

import (
	"strings"
	"testing"

	"github.com/camagent/camagent/control"
)

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		pattern, filter string
		want            bool
	}{
		{"a/b/c", "a/b/c", true},
		{"a/b/c", "a/b/+", false},
		{"a/b/c", "a/+/c", false},
		{"a/b/c", "a/#", false},
		{"a/b/c", "#", false},
		{"a/b/c", "+/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/b/c", "a/b/c/d", false},
		{"a/b/#", "a/b", true},
		{"a/b/#", "a/b/c", true},
		{"a/b/#", "a/b/+", true},
		{"a/b/#", "a/b/#", true},
		{"a/b/#", "a/b/c/+/d", true},
		{"a/b/#", "a/+", false},
		{"a/b/#", "a/+/c", false},
		{"a/b/#", "a/#", false},
		{"a/b/#", "a/bb/c", false},
		{"a/#", "a/b/c", true},
		{"a/+/c", "a/+/c", true},
		{"a/+/c", "a/x/c", true},
		{"a/+/c", "a/#", false},
		{"a/+/c", "a/x/+", false},
		{"a/+/c", "a/x/c/d", false},
	} {
		if got := covers(c.pattern, c.filter); got != c.want {
			t.Errorf("covers(%q, %q) = %v, want %v", c.pattern, c.filter, got, c.want)
		}
	}
}

func TestRules(t *testing.T) {
	dev := rulesFor(Identity{Kind: KindDevice, Name: "porch"}, "camagent", "homeassistant")
	porch := rulesFor(Identity{Kind: KindIntegration, Name: "k1", Devices: []string{"porch"}}, "camagent", "homeassistant")
	all := rulesFor(Identity{Kind: KindIntegration, Name: "k2", Devices: []string{"*"}}, "camagent", "homeassistant")
	hub := rulesFor(Identity{Kind: KindHub, Name: "camhub"}, "camagent", "homeassistant")
	bad := rulesFor(Identity{Kind: KindDevice, Name: "a/b"}, "camagent", "homeassistant")
	unknown := rulesFor(Identity{Kind: "admin", Name: "x"}, "camagent", "homeassistant")

	type check struct {
		r     *rules
		write bool
		topic string
		want  bool
	}
	checks := []check{
		{&dev, false, "camagent/porch/cmd", true},
		{&dev, false, "camagent/garage/cmd", false},
		{&dev, false, "camagent/+/cmd", false},
		{&dev, false, "camagent/porch/+", false},
		{&dev, false, "camagent/porch/#", false},
		{&dev, false, "#", false},
		{&dev, false, "$share/g/camagent/garage/cmd", false},
		{&dev, false, "$share/g/camagent/porch/cmd", true},
		{&dev, false, "camagent/porch/state", false},
		{&dev, false, "$SYS/#", false},
		{&dev, true, "camagent/porch/status", true},
		{&dev, true, "camagent/porch/state", true},
		{&dev, true, "camagent/porch/reply", true},
		{&dev, true, "camagent/porch/events", true},
		{&dev, true, "camagent/porch/snapshot", true},
		{&dev, true, "camagent/porch/cmd", false},
		{&dev, true, "camagent/garage/state", false},
		{&dev, true, "camagent/porch/state/x", false},
		{&dev, true, "homeassistant/sensor/porch/state/config", true},
		{&dev, true, "homeassistant/switch/porch/call/config", true},
		{&dev, true, "homeassistant/binary_sensor/porch/connectivity/config", true},
		{&dev, true, "homeassistant/sensor/porch/other/config", false},
		{&dev, true, "homeassistant/lock/porch/state/config", false},
		{&dev, true, "homeassistant/sensor/garage/state/config", false},
		{&dev, true, "homeassistant/status", false},
		{&porch, false, "camagent/porch/#", true},
		{&porch, false, "camagent/porch/state", true},
		{&porch, false, "camagent/porch/+", true},
		{&porch, false, "camagent/+/state", false},
		{&porch, false, "camagent/garage/state", false},
		{&porch, false, "camagent/#", false},
		{&porch, false, "homeassistant/+/porch/+/config", true},
		{&porch, false, "homeassistant/sensor/porch/state/config", true},
		{&porch, false, "homeassistant/#", false},
		{&porch, false, "homeassistant/status", true},
		{&porch, true, "camagent/porch/cmd", true},
		{&porch, true, "camagent/garage/cmd", false},
		{&porch, true, "camagent/porch/state", false},
		{&porch, true, "homeassistant/status", true},
		{&porch, true, "homeassistant/sensor/porch/state/config", false},
		{&all, false, "camagent/+/state", true},
		{&all, false, "camagent/#", true},
		{&all, false, "homeassistant/#", true},
		{&all, false, "#", false},
		{&all, true, "camagent/garage/cmd", true},
		{&all, true, "camagent//cmd", false},
		{&all, true, "camagent/a/b/cmd", false},
		{&all, true, "camagent/garage/state", false},
		{&hub, false, "#", true},
		{&hub, true, "camagent/garage/state", true},
		{&bad, false, "camagent/a/b/cmd", false},
		{&bad, true, "camagent/a/b/state", false},
		{&unknown, false, "camagent/x/cmd", false},
		{&unknown, true, "camagent/x/cmd", false},
	}
	for _, c := range checks {
		var got bool
		if c.write {
			got = c.r.canWrite(c.topic)
		} else {
			got = c.r.canRead(c.topic)
		}
		if got != c.want {
			t.Errorf("%+v: write=%v %q = %v, want %v", *c.r, c.write, c.topic, got, c.want)
		}
	}
}

// TestDiscoveryAllowed checks every discovery message the agent writes passes
// a device's rules, topic and payload, and that another device's do not.
func TestDiscoveryAllowed(t *testing.T) {
	for _, id := range []string{"porch", "front.door", "Cam-1"} {
		tp := control.Topics{Prefix: "camagent", ID: id}
		s := session{rules: rulesFor(Identity{Kind: KindDevice, Name: id}, "camagent", "homeassistant")}
		other := session{rules: rulesFor(Identity{Kind: KindDevice, Name: "garage"}, "camagent", "homeassistant")}
		ha := control.HomeAssistant{Prefix: "homeassistant", DefaultChannel: "porch-call"}
		msgs := control.DiscoveryMessages(tp, ha, "s3cret")
		if len(msgs) < 9 {
			t.Fatalf("%d discovery messages", len(msgs))
		}
		for _, m := range msgs {
			if !s.mayPublish(m.Topic, m.Payload) {
				t.Errorf("device %s may not publish its discovery %s", id, m.Topic)
			}
			if other.mayPublish(m.Topic, m.Payload) {
				t.Errorf("device garage may publish %s", m.Topic)
			}
		}
	}
}

func TestDiscoveryPayload(t *testing.T) {
	own := []string{"camagent/porch/cmd", "camagent/porch/state", "camagent/porch/status"}
	for payload, want := range map[string]bool{
		``: true,
		`{"command_topic":"camagent/porch/cmd","state_topic":"camagent/porch/state"}`:    true,
		`{"command_topic":"camagent/garage/cmd"}`:                                        false,
		`{"cmd_t":"camagent/garage/cmd"}`:                                                false,
		`{"~":"camagent/garage","cmd_t":"~/cmd"}`:                                        false,
		`{"availability":[{"topic":"camagent/garage/status"}]}`:                          false,
		`{"availability":[{"topic":"camagent/porch/status"}]}`:                           true,
		`{"command_topic":"zigbee2mqtt/front_lock/set"}`:                                 false,
		`{"command_topic":7}`:                                                            false,
		`{"device":{"name":"x"},"json_attributes_topic":"camagent/porch/state","qos":1}`: true,
		`not json`: false,
	} {
		if got := haPayloadOK([]byte(payload), own); got != want {
			t.Errorf("haPayloadOK(%s) = %v, want %v", payload, got, want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{}, "no authentication configured"},
		{Options{TCPAddr: "0.0.0.0:1883", AllowAnonymous: true}, "beyond loopback without authentication"},
		{Options{TCPAddr: ":1883", AllowAnonymous: true}, "beyond loopback without authentication"},
		{Options{TCPAddr: "127.0.0.1:0", WSAddr: "192.168.1.2:9001", AllowAnonymous: true}, "beyond loopback without authentication"},
		{Options{Users: map[string]string{"hub": "x"}, TCPAddr: "0.0.0.0:0", AllowAnonymous: true}, "beyond loopback"},
		{Options{Users: map[string]string{"hub": "x"}, Prefix: "a/#"}, "must not contain"},
	} {
		_, err := New(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error saying %q", c.opts, err, c.want)
		}
	}
	for _, opts := range []Options{
		{TCPAddr: "127.0.0.1:0", AllowAnonymous: true},
		{TCPAddr: "[::1]:0", WSAddr: "localhost:0", AllowAnonymous: true},
		{TCPAddr: "0.0.0.0:0", Users: map[string]string{"hub": "x"}},
	} {
		if _, err := New(opts); err != nil {
			t.Errorf("New(%+v): %v", opts, err)
		}
	}
}
