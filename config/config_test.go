package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name     string             `yaml:"name"`
	MQTTURL  string             `yaml:"mqttURL"`
	APIKeys  []string           `yaml:"tokenAPIKeys"`
	Port     int                `yaml:"port"`
	On       bool               `yaml:"iceLoopbackOnly"`
	Timeout  time.Duration      `yaml:"joinTimeout"`
	Levels   map[string]string  `yaml:"logLevels"`
	Hz       float64            `yaml:"toneHz"`
	Apps     []struct{ ID int } `yaml:"apps"`
	Internal string
	Network  struct {
		TLSCert string `yaml:"tlsCert"`
		Turn    struct {
			UDPPort int `yaml:"udpPort"`
		} `yaml:"turn"`
	} `yaml:"network"`
}

func TestEnvName(t *testing.T) {
	for key, want := range map[string]string{
		"id": "X_ID", "mqtt": "X_MQTT", "mqttPasswordFile": "X_MQTT_PASSWORD_FILE", "hubKey": "X_HUB_KEY",
		"tokenAPIKeys": "X_TOKEN_API_KEYS", "iceLoopbackOnly": "X_ICE_LOOPBACK_ONLY", "appId": "X_APP_ID",
		"toneHz": "X_TONE_HZ", "fps": "X_FPS", "mqttURL": "X_MQTT_URL", "h264Level": "X_H264_LEVEL",
		"network.tlsCert": "X_NETWORK_TLS_CERT", "network.turn.udpPort": "X_NETWORK_TURN_UDP_PORT",
	} {
		if got := EnvName("X_", key); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	var s sample
	_, err := ApplyEnv("X_", &s, []string{"PATH=/bin", "X_NAME=a: b", "X_MQTT_URL=tcp://h:1",
		"X_TOKEN_API_KEYS=k1, k2", "X_PORT=42", "X_ICE_LOOPBACK_ONLY=true", "X_JOIN_TIMEOUT=2s",
		"X_LOG_LEVELS=sfu=debug,rtc=warn", "X_TONE_HZ=1e3", "X_CONFIG=ignored",
		"X_NETWORK_TLS_CERT=/c.pem", "X_NETWORK_TURN_UDP_PORT=3478"}, "X_CONFIG")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "a: b" || s.MQTTURL != "tcp://h:1" || len(s.APIKeys) != 2 || s.APIKeys[1] != "k2" ||
		s.Port != 42 || !s.On || s.Timeout != 2*time.Second || s.Levels["sfu"] != "debug" || s.Levels["rtc"] != "warn" || s.Hz != 1000 ||
		s.Network.TLSCert != "/c.pem" || s.Network.Turn.UDPPort != 3478 {
		t.Errorf("got %+v", s)
	}
	for _, bad := range []string{"X_PORT=4x", "X_PORT=[1]", "X_ICE_LOOPBACK_ONLY=maybe", "X_JOIN_TIMEOUT=5", "X_LOG_LEVELS=sfu"} {
		if _, err := ApplyEnv("X_", &s, []string{bad}); err == nil {
			t.Errorf("%s: no error", bad)
		} else if name, _, _ := strings.Cut(bad, "="); !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the variable", bad, err)
		}
	}
}

func TestApplyEnvUnknown(t *testing.T) {
	var s sample
	unknown, err := ApplyEnv("X_", &s, []string{"X_NAMEE=1", "X_APPS=1", "X_INTERNAL=1", "X_NETWORK=x", "X_NAME=ok", "X_CONFIG=f"}, "X_CONFIG")
	if err != nil || strings.Join(unknown, " ") != "X_NAMEE X_APPS X_INTERNAL X_NETWORK" || s.Name != "ok" {
		t.Errorf("unknown %v, err %v, name %q", unknown, err, s.Name)
	}
	if w := UnknownEnvWarning("X_", &s, unknown); !strings.Contains(w, "X_NAMEE") || !strings.Contains(w, "X_NETWORK_TLS_CERT") {
		t.Errorf("warning %q", w)
	}
}

func TestDecodeNamesTheLine(t *testing.T) {
	var s sample
	for doc, want := range map[string]string{
		"name: x\nport: 1\nnmae: y\n":  "line 3",
		"name: x\nport: many\n":        "line 2",
		"joinTimeout: forever\n":       "line 1",
		"name: x\nlogLevels: [a, b]\n": "line 2",
	} {
		err := Decode([]byte(doc), &s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one naming %s", doc, err, want)
		}
	}
	if err := Decode(nil, &s); err != nil {
		t.Errorf("empty document: %v", err)
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	cred := filepath.Join(dir, "creds")
	os.Mkdir(cred, 0o700)
	os.WriteFile(filepath.Join(cred, "mqttPassword"), []byte("from-credential"), 0o600)
	for _, c := range []struct{ value, file, credDir, want string }{
		{"inline", "", cred, "inline"},
		{"", file, cred, "from-file"},
		{"", "", cred, "from-credential"},
		{"", "", "", ""},
		{"", "", dir, ""}, // no such credential
	} {
		got, err := Secret("mqttPassword", c.value, c.file, "mqttPassword", c.credDir)
		if err != nil || got != c.want {
			t.Errorf("%+v: %q, %v", c, got, err)
		}
	}
	if _, err := Secret("mqttPassword", "a", file, "", ""); err == nil {
		t.Error("value and file both set: no error")
	}
	if _, err := Secret("hubKey", "", filepath.Join(dir, "missing"), "", ""); err == nil || !strings.Contains(err.Error(), "hubKeyFile") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := Logger(&buf, "warn", map[string]string{"sfu": "debug"}, true)
	if err != nil {
		t.Fatal(err)
	}
	log.With("component", "sfu").Debug("sfu-debug")
	log.With("component", "rtc").Info("rtc-info")
	log.Debug("record-attr", "component", "sfu")
	log.Info("plain-info")
	log.Warn("plain-warn")
	out := buf.String()
	for _, want := range []string{"sfu-debug", "record-attr", "plain-warn"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	for _, not := range []string{"rtc-info", "plain-info", "time="} {
		if strings.Contains(out, not) {
			t.Errorf("unexpected %s in\n%s", not, out)
		}
	}
	buf.Reset()
	log, _ = Logger(&buf, "", nil, false)
	log.Info("x")
	if !strings.Contains(buf.String(), "time=") {
		t.Errorf("outside the journal lines carry the time: %s", buf.String())
	}
	if _, err := Logger(&buf, "loud", nil, false); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := Logger(&buf, "info", map[string]string{"sfu": "chatty"}, false); err == nil || !strings.Contains(err.Error(), "logLevels.sfu") {
		t.Errorf("bad component level: %v", err)
	}
}

// TestLoggerOneComponent: a logger derived from one with a component names only the new
// component, in the old one's place, and keeps the other attributes and the new level.
func TestLoggerOneComponent(t *testing.T) {
	var buf bytes.Buffer
	log, err := Logger(&buf, "info", map[string]string{"alsa": "warn"}, true)
	if err != nil {
		t.Fatal(err)
	}
	agent := log.With("component", "agent", "channel", "porch")
	alsa := agent.With("component", "alsa", "pcm", "default")
	alsa.Info("alsa-info") // alsa is at warn: dropped
	alsa.Warn("aplay failed")
	agent.Info("agent-info")
	out := buf.String()
	if strings.Contains(out, "alsa-info") {
		t.Errorf("alsa's level not applied:\n%s", out)
	}
	want := []string{
		`level=WARN msg="aplay failed" component=alsa channel=porch pcm=default`,
		`level=INFO msg=agent-info component=agent channel=porch`,
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("want line %q in\n%s", w, out)
		}
	}
	if n := strings.Count(out, "component="); n != 2 {
		t.Errorf("%d components in two lines:\n%s", n, out)
	}
	// Without per-component levels the same holds.
	buf.Reset()
	log, _ = Logger(&buf, "info", nil, true)
	log.With("component", "agent").With("component", "alsa").WithGroup("g").Info("x", "k", 1)
	if got := buf.String(); got != "level=INFO msg=x component=alsa g.k=1\n" {
		t.Errorf("got %q", got)
	}
}

func TestFileAndEnv(t *testing.T) {
	type cfg struct {
		A string `yaml:"a"`
		B int    `yaml:"b"`
	}
	dir := t.TempDir()
	path := dir + "/c.yaml"
	if err := os.WriteFile(path, []byte("a: from-file\nb: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The file named by the flag, then the environment over it; unknown variables reported.
	c := cfg{A: "default"}
	unknown, err := FileAndEnv("X_", &c, path, []string{"X_B=2", "X_NOPE=1", "OTHER=3"})
	if err != nil || c.A != "from-file" || c.B != 2 || len(unknown) != 1 || unknown[0] != "X_NOPE" {
		t.Fatalf("got %+v, unknown %v, err %v", c, unknown, err)
	}
	// No flag: $X_CONFIG names the file.
	c = cfg{}
	if _, err := FileAndEnv("X_", &c, "", []string{"X_CONFIG=" + path}); err != nil || c.A != "from-file" {
		t.Fatalf("X_CONFIG: %+v %v", c, err)
	}
	// Neither: defaults stay; a bad value names the variable.
	c = cfg{A: "default"}
	if _, err := FileAndEnv("X_", &c, "", nil); err != nil || c.A != "default" {
		t.Fatalf("no file: %+v %v", c, err)
	}
	if _, err := FileAndEnv("X_", &c, "", []string{"X_B=many"}); err == nil || !strings.Contains(err.Error(), "X_B") {
		t.Fatalf("bad value: %v", err)
	}
	if got := Getenv([]string{"K=1", "K=2", "KK=3"}, "K"); got != "2" {
		t.Fatalf("Getenv = %q, want the last K", got)
	}
}
