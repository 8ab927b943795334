package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testKey      = "cam_d_0a1b2c3d_q8Zr0sVHXc9yAtHbm3v5Wn2lK7pD1fGeJ4uI6oR8sT0"
	testPassword = "mqtt-pa55word-never-logged"
)

// TestTransportRules: a configuration that would send the device credential (hubKey) or
// the MQTT password in the clear to another machine is refused with what to configure;
// loopback and TLS pass; allowInsecureTransport turns the refusals into warnings. No
// message carries the secret.
func TestTransportRules(t *testing.T) {
	cases := []struct {
		name     string
		tune     func(*Config)
		want     []string // substrings of the error; none: valid
		warnings int      // with allowInsecureTransport: true
	}{
		{"defaults with key and password (loopback)", func(c *Config) { c.HubKey, c.MQTTPassword = testKey, testPassword }, nil, 0},
		{"http LAN hub without a key", func(c *Config) { c.Hub = "http://192.168.1.10:8080" }, nil, 0},
		{"http LAN hub with a key", func(c *Config) { c.Hub, c.HubKey = "http://192.168.1.10:8080", testKey },
			[]string{"hub: http://192.168.1.10:8080 is plain http://", "use https://", "hubCA", "allowInsecureTransport"}, 1},
		{"http named hub with a key", func(c *Config) { c.Hub, c.HubKey = "http://hub.local:8080", testKey }, []string{"hub: http://hub.local:8080"}, 1},
		{"https hub with a key", func(c *Config) { c.Hub, c.HubKey = "https://hub.local:8443", testKey }, nil, 0},
		{"http localhost with a key", func(c *Config) { c.Hub, c.HubKey = "http://localhost:8080", testKey }, nil, 0},
		{"http [::1] with a key", func(c *Config) { c.Hub, c.HubKey = "http://[::1]:8080", testKey }, nil, 0},
		{"http 127.0.0.2 with a key", func(c *Config) { c.Hub, c.HubKey = "http://127.0.0.2:8080", testKey }, nil, 0},
		{"second hub over http with a key", func(c *Config) {
			c.Hub, c.Hubs, c.HubKey = "https://hub.local", []string{"https://hub2.local", "http://hub3.lan:8080"}, testKey
		}, []string{"hubs[1]: http://hub3.lan:8080 is plain http://"}, 1},
		{"tcp LAN broker with a password", func(c *Config) { c.MQTT, c.MQTTPassword = "tcp://broker.lan:1883", testPassword },
			[]string{"mqtt: tcp://broker.lan:1883 is unencrypted", "ssl://", "wss://", "mqttCAFile", "allowInsecureTransport"}, 1},
		{"ws LAN broker with a password", func(c *Config) { c.MQTT, c.MQTTPassword = "ws://10.0.0.2:8083/mqtt", testPassword }, []string{"mqtt: ws://10.0.0.2:8083/mqtt"}, 1},
		{"password in the broker URL", func(c *Config) { c.MQTT = "tcp://cam:" + testPassword + "@broker.lan:1883" }, []string{"mqtt: tcp://…@broker.lan:1883"}, 1},
		{"tcp LAN broker without a password", func(c *Config) { c.MQTT = "tcp://broker.lan:1883" }, nil, 0},
		{"second broker of a cluster in the clear", func(c *Config) {
			c.MQTT, c.MQTTPassword = "ssl://nats1.lan:8883, tcp://nats2.lan:1883", testPassword
		}, []string{"mqtt: tcp://nats2.lan:1883 is unencrypted"}, 1},
		{"password in the second broker URL", func(c *Config) {
			c.MQTT = "ssl://nats1.lan:8883,tcp://cam:" + testPassword + "@nats2.lan:1883"
		}, []string{"mqtt: tcp://…@nats2.lan:1883"}, 1},
		{"cluster over ssl with a password", func(c *Config) { c.MQTT, c.MQTTPassword = "ssl://nats1.lan:8883,ssl://nats2.lan:8883", testPassword }, nil, 0},
		{"ssl broker with a password", func(c *Config) { c.MQTT, c.MQTTPassword = "ssl://broker.lan:8883", testPassword }, nil, 0},
		{"wss broker with a password", func(c *Config) { c.MQTT, c.MQTTPassword = "wss://broker.lan/mqtt", testPassword }, nil, 0},
		{"tcp localhost broker with a password", func(c *Config) { c.MQTT, c.MQTTPassword = "tcp://localhost:1883", testPassword }, nil, 0},
		{"both in the clear", func(c *Config) {
			c.Hub, c.HubKey, c.MQTT, c.MQTTPassword = "http://hub.lan", testKey, "tcp://hub.lan:1883", testPassword
		}, []string{"hub: http://hub.lan", "mqtt: tcp://hub.lan:1883"}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.tune(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if w := c.Warnings(); len(w) != 0 {
					t.Fatalf("warnings without allowInsecureTransport: %q", w)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			for _, secret := range []string{testKey, testPassword} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %q", err)
				}
			}
			c.AllowInsecureTransport = true
			if err := c.Validate(); err != nil {
				t.Fatalf("with allowInsecureTransport: %v", err)
			}
			w := c.Warnings()
			if len(w) != tc.warnings {
				t.Fatalf("warnings %q, want %d", w, tc.warnings)
			}
			for _, s := range w {
				if !strings.Contains(s, "lab network only") || strings.Contains(s, testKey) || strings.Contains(s, testPassword) {
					t.Errorf("warning %q", s)
				}
			}
		})
	}
}

// TestHubURLValidation: hub and each of hubs must be a hub's base URL.
func TestHubURLValidation(t *testing.T) {
	for _, tc := range []struct {
		hub  string
		hubs []string
		want string
	}{
		{"https://hub.local:8443/", []string{"https://hub2.local", "http://127.0.0.1:9090/camhub"}, ""},
		{"hub.local:8080", nil, `hub: "hub.local:8080": not an http:// or https:// URL`},
		{"https://", nil, `hub: "https://": no host`},
		{"https://hub.local", []string{"ftp://hub2.local"}, `hubs[0]: "ftp://hub2.local": not an http:// or https:// URL`},
		{"https://hub.local", []string{"https://a", "https://hub2.local/?x=1"}, `hubs[1]: "https://hub2.local/?x=1": a hub base URL has no query or fragment`},
		{"https://hub.local", []string{"https://u:" + testPassword + "@hub2.local"}, `hubs[0]: "https://…@hub2.local": user info in a hub URL is not used`},
		{"https://hub.local", []string{""}, `hubs[0]: "": not an http:// or https:// URL`},
	} {
		c := Defaults()
		c.Hub, c.Hubs = tc.hub, tc.hubs
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("hub %q hubs %q: %v", tc.hub, tc.hubs, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("hub %q hubs %q: %v, want %q", tc.hub, tc.hubs, err, tc.want)
		case err != nil && strings.Contains(err.Error(), testPassword):
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// TestHubFor: a join's server picks one of the configured hubs, compared normalized
// (scheme and host case, default port, trailing slash); any other is refused.
func TestHubFor(t *testing.T) {
	c := Defaults()
	c.Hub = "http://127.0.0.1:8080"
	c.Hubs = []string{"https://Hub2.Example", "https://hub3.example:8443/camhub/"}
	for _, tc := range []struct{ server, want string }{
		{"", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
		{"HTTP://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"https://hub2.example", "https://Hub2.Example"},
		{"https://HUB2.example:443/", "https://Hub2.Example"},
		{"https://hub3.example:8443/camhub", "https://hub3.example:8443/camhub/"},
		{"http://127.0.0.1:8081", ""},
		{"https://127.0.0.1:8080", ""},
		{"http://localhost:8080", ""}, // the same machine, another name: not configured
		{"http://127.0.0.1:8080/other", ""},
		{"https://hub3.example:8443/CAMHUB", ""},
		{"http://hub2.example", ""},
		{"https://hub2.example:8443", ""},
		{"https://evil.example", ""},
		{"http://u:" + testPassword + "@127.0.0.1:8080", ""},
		{"http://127.0.0.1:8080?x=1", ""},
		{"ws://127.0.0.1:8080", ""},
		{"127.0.0.1:8080", ""},
		{"%zz", ""},
	} {
		got, err := c.hubFor(tc.server)
		if tc.want != "" {
			if err != nil || got != tc.want {
				t.Errorf("server %q: %q, %v; want %q", tc.server, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("server %q: accepted as %q", tc.server, got)
			continue
		}
		if !strings.Contains(err.Error(), "is not one of this device's configured hubs (hub, hubs)") || strings.Contains(err.Error(), testPassword) {
			t.Errorf("server %q: %v", tc.server, err)
		}
	}
	if _, err := c.hubFor("https://evil.example"); err == nil || err.Error() != `server "https://evil.example" is not one of this device's configured hubs (hub, hubs)` {
		t.Errorf("error text: %v", err)
	}
}

// TestCredentialFile: the device credential is the MQTT password (user: the device id) and
// the hub key unless those are set; it may come from the systemd credential "credential";
// a malformed or empty one is an error that does not show it.
func TestCredentialFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "credential")
	if err := os.WriteFile(file, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "credential"), []byte(testKey), 0o600)
	for _, tc := range []struct {
		name                  string
		tune                  func(*Config)
		credDir               string
		user, password, key   string
		wantErr, credentialID string
	}{
		{"file sets both", func(c *Config) { c.CredentialFile = file }, "", "porch", testKey, testKey, "", "0a1b2c3d"},
		{"systemd credential sets both", func(c *Config) {}, creds, "porch", testKey, testKey, "", "0a1b2c3d"},
		{"explicit password and user kept", func(c *Config) {
			c.CredentialFile, c.MQTTUsername, c.MQTTPassword = file, "fleet", "other"
		}, "", "fleet", "other", testKey, "", "0a1b2c3d"},
		{"explicit user kept", func(c *Config) { c.CredentialFile, c.MQTTUsername = file, "cam-7" }, "", "cam-7", testKey, testKey, "", "0a1b2c3d"},
		{"explicit hub key kept", func(c *Config) { c.CredentialFile, c.HubKey = file, "integration-key" }, "", "porch", testKey, "integration-key", "", "0a1b2c3d"},
		{"none", func(c *Config) {}, "", "", "", "", "", ""},
		{"missing file", func(c *Config) { c.CredentialFile = filepath.Join(dir, "nope") }, "", "", "", "", "credentialFile: open", ""},
		{"empty file", func(c *Config) {
			p := filepath.Join(dir, "empty")
			os.WriteFile(p, []byte("\n"), 0o600)
			c.CredentialFile = p
		}, "", "", "", "", "is empty", ""},
		{"an API key, not a device credential", func(c *Config) {
			p := filepath.Join(dir, "apikey")
			os.WriteFile(p, []byte("cam_k_0a1b2c3d_q8Zr0sVHXc9yAtHbm3v5Wn2lK7pD1fGeJ4uI6oR8sT0"), 0o600)
			c.CredentialFile = p
		}, "", "", "", "", "not a device credential", ""},
		{"bad key id", func(c *Config) {
			p := filepath.Join(dir, "badid")
			os.WriteFile(p, []byte("cam_d_0A1B2C3X_q8Zr0sVHXc9yAtHbm3v5Wn2lK7pD1fGeJ4uI6oR8sT0"), 0o600)
			c.CredentialFile = p
		}, "", "", "", "", "not a device credential", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.ID = "porch"
			tc.tune(&c)
			err := c.ResolveSecrets(tc.credDir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "q8Zr0sVH") {
					t.Fatalf("error shows the credential: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MQTTUsername != tc.user || c.MQTTPassword != tc.password || c.HubKey != tc.key || c.CredentialID() != tc.credentialID {
				t.Fatalf("user %q password %q hubKey %q id %q; want %q %q %q %q", c.MQTTUsername, c.MQTTPassword, c.HubKey,
					c.CredentialID(), tc.user, tc.password, tc.key, tc.credentialID)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("resolved configuration: %v", err)
			}
		})
	}
}
