package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
)

func TestConfigPipeline(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "camhub.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:9000\nmqttListen: 127.0.0.1:9001\ntrustedProxies: [127.0.0.1]\nlogLevel: warn\n"), 0o600)
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "mqttPassword"), []byte("pw\n"), 0o600)
	env := []string{"CAMHUB_MQTT_LISTEN=127.0.0.1:9002", "CAMHUB_LOG_LEVEL=debug", "CREDENTIALS_DIRECTORY=" + creds,
		"CAMHUB_STATE_DIR=" + dir}
	var stderr bytes.Buffer
	cfg, code := load([]string{"--config", file, "--log-level", "error", "--demo"}, env, &stderr)
	if code >= 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if cfg.Listen != "127.0.0.1:9000" || cfg.MQTTListen != "127.0.0.1:9002" || cfg.LogLevel != "error" ||
		strings.Join(cfg.TrustedProxies, ",") != "127.0.0.1" || !cfg.Demo || cfg.MQTTPassword != "pw" || cfg.StateDir != dir {
		t.Errorf("got %+v", cfg)
	}
	for _, c := range []struct {
		yaml string
		env  []string
		want string
	}{
		{"apps:\n  - id: demo\n    cert: x\n", nil, "line 3: field cert not found"},
		{"listen: [1]\n", nil, "line 1: cannot unmarshal"},
		{"", []string{"CAMHUB_DEMO=sometimes"}, "CAMHUB_DEMO"},
		{"tokenAPIOpenOnLoopback: true\n", nil, "field tokenAPIOpenOnLoopback not found"},
		// Refusing to run insecurely: demo beyond loopback, plain HTTP beyond loopback.
		{"demo: true\nlisten: 0.0.0.0:8080\n", nil, "demo mode trusts every loopback client"},
		{"demo: true\nmqttListen: 0.0.0.0:1883\n", nil, "mqttListen"},
		{"listen: 0.0.0.0:8080\nnetwork:\n  tls: \"off\"\n", nil, "without TLS"},
		{"metricsListen: 0.0.0.0:9100\n", nil, "metricsListen"},
		{"trustedProxies: [bogus]\n", nil, "trustedProxies"},
		{"allowedOrigins: ['*']\n", nil, "allowedOrigins"},
		{"iceLoopbackOnly: maybe\n", nil, `iceLoopbackOnly: "maybe"`},
	} {
		os.WriteFile(file, []byte(c.yaml), 0o600)
		stderr.Reset()
		if _, code := load([]string{"--config", file}, c.env, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q %v: exit %d, %q, want %q", c.yaml, c.env, code, stderr.String(), c.want)
		}
	}
}

// camhub token signs with the App certificate from a systemd credential.
func TestTokenWithCredential(t *testing.T) {
	dir := t.TempDir()
	cert := "0123456789abcdef0123456789abcdef"
	os.WriteFile(filepath.Join(dir, "appCertificate-demo"), []byte(cert+"\n"), 0o600)
	var out, errb bytes.Buffer
	code := run([]string{"token", "--channel", "porch", "--uid", "7"},
		[]string{"CREDENTIALS_DIRECTORY=" + dir, "CAMHUB_STATE_DIR=" + t.TempDir()}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	c, err := token.Parse(strings.TrimSpace(out.String()), func(app, kid string) (string, bool) { return cert, app == "demo" })
	if err != nil || c.Channel != "porch" {
		t.Fatalf("token %q: %+v %v", out.String(), c, err)
	}
}

// The built binary under a notify socket: READY=1 once listening, STOPPING=1 and exit 0 on
// SIGTERM.
func TestNotifyAndSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "camhub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notes := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--state-dir", dir)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	want := []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1"}
	for _, w := range want {
		select {
		case n := <-notes:
			if n != w {
				t.Fatalf("got %q, want %q\n%s", n, w, logs.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s\n%s", w, logs.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exit took %s", d)
	}
	for {
		select {
		case n := <-notes:
			if n == "STOPPING=1" {
				return
			}
		case <-time.After(time.Second):
			t.Fatal("no STOPPING=1")
		}
	}
}
