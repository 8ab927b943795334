package natsconf_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/natsconf"
)

// TestConfig: what each identity may do, the users left out without a hash, and ids that
// cannot be NATS subject tokens refused.
func TestConfig(t *testing.T) {
	o := natsconf.Options{Prefix: "camagent", HAPrefix: "homeassistant", HubUsers: []string{"camhub"},
		Devices: []string{"cam1", "nohash"}, Keys: []auth.Key{{ID: "k1", Devices: []string{"*"}, MQTT: true}, {ID: "k2"}},
		Hashes: map[string]string{"camhub": "$2a$h", "cam1": "$2a$c", "k1": "$2a$k"}}
	conf, missing, err := natsconf.Config(o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(missing, ",") != "nohash" {
		t.Errorf("missing %q, want nohash (k2 has no MQTT login)", missing)
	}
	for _, want := range []string{
		`publish: {allow: ["camagent.*.cmd"]}`, `subscribe: {allow: ["camagent.>", "$MQTT.sub.>"]}`,
		`subscribe: {allow: ["camagent.cam1.cmd", "$MQTT.sub.>"]}`, `"camagent.cam1.reply"`, `"homeassistant.*.cam1.*.config"`,
		`user: "k1"`, `allowed_connection_types: ["MQTT"]`,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %s:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "k2") || strings.Contains(conf, `"nohash"`) {
		t.Errorf("config has a user it should not:\n%s", conf)
	}
	for _, bad := range []string{"a.b", "a*", "a>", "a b", "$x", "a/b"} {
		if _, _, err := natsconf.Config(natsconf.Options{Prefix: "camagent", Devices: []string{bad}}); err == nil {
			t.Errorf("device id %q accepted", bad)
		}
	}
}

// TestPasswords: SetPassword adds and replaces entries that ReadPasswords reads back.
func TestPasswords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nats-passwd")
	for _, e := range [][2]string{{"cam1", "one"}, {"cam2", "two"}, {"cam1", "three"}} {
		if err := natsconf.SetPassword(path, e[0], e[1]); err != nil {
			t.Fatal(err)
		}
	}
	h, err := natsconf.ReadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || !strings.HasPrefix(h["cam1"], "$2") || h["cam1"] == h["cam2"] {
		t.Errorf("entries %v", h)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if err := natsconf.SetPassword(path, "a.b", "x"); err == nil {
		t.Error("user a.b accepted")
	}
}
