package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/hub"
)

func write(t *testing.T, path, s string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// defaults → file → environment → flags, then secrets from files and credentials.
func TestConfigPipeline(t *testing.T) {
	dir := t.TempDir()
	file := write(t, filepath.Join(dir, "camagent.yaml"),
		"mqtt: ssl://file:8883\nhub: https://file:8443\ncamera: null\nfps: 10\nmqttPasswordFile: "+
			write(t, filepath.Join(dir, "pw"), "s3cret\n")+"\n")
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	write(t, filepath.Join(creds, "hubKey"), "key-from-credential")
	env := []string{"CAMAGENT_HUB=https://env:8443", "CAMAGENT_HUBS=https://hub2:8443,https://hub3", "CAMAGENT_CAMERA=test", "CAMAGENT_FPS=15",
		"CAMAGENT_LOG_LEVELS=rtc=debug", "CREDENTIALS_DIRECTORY=" + creds, "CAMAGENT_STATE_DIR=" + dir}
	var stderr bytes.Buffer
	cfg, code := load("camagent", []string{"--config", file, "--camera", "v4l2:/dev/video7", "--id", "porch"}, env, &stderr)
	if code >= 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for what, c := range map[string][2]any{
		"mqtt (file)":            {cfg.MQTT, "ssl://file:8883"},
		"hub (env over file)":    {cfg.Hub, "https://env:8443"},
		"hubs (env)":             {strings.Join(cfg.Hubs, " "), "https://hub2:8443 https://hub3"},
		"fps (env over file)":    {cfg.FPS, 15},
		"camera (flag over all)": {cfg.Camera, "v4l2:/dev/video7"},
		"id (flag)":              {cfg.ID, "porch"},
		"width (default)":        {cfg.Width, 640},
		"password (file)":        {cfg.MQTTPassword, "s3cret"},
		"hubKey (credential)":    {cfg.HubKey, "key-from-credential"},
		"logLevels (env)":        {cfg.LogLevels["rtc"], "debug"},
	} {
		if c[0] != c[1] {
			t.Errorf("%s: %v, want %v", what, c[0], c[1])
		}
	}
	// $CAMAGENT_CONFIG names the file when --config does not.
	cfg, code = load("camagent", nil, []string{"CAMAGENT_CONFIG=" + file, "CAMAGENT_STATE_DIR=" + dir}, &stderr)
	if code >= 0 || cfg.MQTT != "ssl://file:8883" {
		t.Errorf("CAMAGENT_CONFIG: exit %d, mqtt %s", code, cfg.MQTT)
	}
	// Nothing given: the defaults, with the host name as the id.
	cfg, code = load("camagent", nil, nil, &stderr)
	host, _ := os.Hostname()
	if code >= 0 || cfg.ID == "" || (host != "" && !strings.Contains(host, cfg.ID[:1])) || cfg.StateDir == "" {
		t.Errorf("defaults: exit %d, id %q, stateDir %q", code, cfg.ID, cfg.StateDir)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, yaml string
		env, args  []string
		want       string
	}{
		{"unknown key", "mqtt: tcp://h:1\nmqtt_url: x\n", nil, nil, "line 2: field mqtt_url not found"},
		{"wrong type", "fps: fast\n", nil, nil, "line 1: cannot unmarshal"},
		{"bad env", "", []string{"CAMAGENT_FPS=fast"}, nil, "CAMAGENT_FPS (fps)"},
		{"invalid", "fps: 0\nhub: ftp://x\n", nil, nil, "fps: 0 (1 to 120)"},
		{"bad spec", "", nil, []string{"--camera", "usb"}, `camera "usb": unknown kind`},
		{"bad level", "logLevel: loud\n", nil, nil, `logLevel: "loud"`},
		{"two passwords", "mqttPassword: a\nmqttPasswordFile: /x\n", nil, nil, "both set"},
		{"key over http", "hub: http://hub.lan:8080\nhubKey: k3y\n", nil, nil, "hub: http://hub.lan:8080 is plain http:// to another machine"},
		{"password over tcp", "mqtt: tcp://broker.lan:1883\nmqttPassword: pw\n", nil, nil, "use ssl:// (or wss://) and set mqttCAFile"},
		{"bad second hub", "", []string{"CAMAGENT_HUBS=https://hub2,hub3:8080"}, nil, `hubs[1]: "hub3:8080": not an http:// or https:// URL`},
		{"not a device credential", "credentialFile: " + write(t, filepath.Join(dir, "cred"), "hunter2\n") + "\n", nil, nil,
			"credentialFile: not a device credential"},
	} {
		path := write(t, filepath.Join(dir, "c.yaml"), c.yaml)
		var stderr bytes.Buffer
		_, code := load("camagent", append([]string{"--config", path}, c.args...), c.env, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", c.name, code, stderr.String(), c.want)
		}
	}
}

// An unknown CAMAGENT_ variable is a warning (test tools share the prefix), not an error.
func TestUnknownEnvWarns(t *testing.T) {
	var stderr bytes.Buffer
	_, code := load("camagent", nil, []string{"CAMAGENT_MQTT_URL=x", "CAMAGENT_STATE_DIR=" + t.TempDir()}, &stderr)
	if code >= 0 || !strings.Contains(stderr.String(), "warning: CAMAGENT_MQTT_URL: no such setting") ||
		!strings.Contains(stderr.String(), "CAMAGENT_MQTT,") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// startHub runs a hub with its embedded broker on free loopback ports.
func startHub(t *testing.T) *hub.Hub {
	t.Helper()
	cfg := hub.Defaults()
	cfg.Demo = true // loopback trust: the agent and the test clients have no credentials
	cfg.Listen, cfg.MQTTListen, cfg.StateDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	h, err := hub.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-h.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return h
}

func TestCheck(t *testing.T) {
	h := startHub(t)
	var out bytes.Buffer
	env := []string{"CAMAGENT_STATE_DIR=" + t.TempDir()}
	code := run([]string{"check", "--mqtt", h.BrokerURL(), "--hub", "http://" + h.Addr(), "--speaker", "null"}, env, &out, &out)
	if code != 0 || !strings.Contains(out.String(), "all checks passed") {
		t.Errorf("healthy: exit %d\n%s", code, out.String())
	}
	// A closed port for both the broker and the hub.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	out.Reset()
	code = run([]string{"check", "--mqtt", "tcp://" + dead, "--hub", "http://" + dead, "--camera", "v4l2:/dev/video-none"}, env, &out, &out)
	for _, want := range []string{"FAIL broker", "FAIL hub", "FAIL camera", "fix:", "3 problem(s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("broken: missing %q in\n%s", want, out.String())
		}
	}
	if code != 1 {
		t.Errorf("broken: exit %d", code)
	}
	out.Reset()
	if code := run([]string{"check", "--mqtt", "nope"}, env, &out, &out); code != 1 || !strings.Contains(out.String(), "FAIL configuration") {
		t.Errorf("bad config: exit %d\n%s", code, out.String())
	}
}

// The built binary, mid-call, gets SIGTERM as from systemctl stop: it leaves the channel,
// publishes its idle state and "offline", and exits 0 within 5 s. On the way it speaks the
// notify protocol: READY=1 once connected, STOPPING=1 on the signal.
func TestSIGTERMMidCall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "camagent")
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

	h := startHub(t)
	base := "http://" + h.Addr()
	cmd := exec.Command(bin, "--id", "sigterm-device", "--mqtt", h.BrokerURL(), "--hub", base,
		"--speaker", "wav:"+filepath.Join(dir, "speaker.wav"), "--ice-loopback-only", "--state-dir", filepath.Join(dir, "state"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=2000000", "JOURNAL_STREAM=8:1")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	select {
	case n := <-notes:
		if n != "READY=1" {
			t.Fatalf("first notification %q", n)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no READY=1\n%s", logs.String())
	}

	reply := postCommand(t, base, "sigterm-device", `{"id":"j1","action":"join","channel":"sigterm"}`)
	if !strings.Contains(reply, `"ok":true`) || !strings.Contains(reply, `"joined"`) {
		t.Fatalf("join: %s\n%s", reply, logs.String())
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	werr := make(chan error, 1)
	go func() { werr <- cmd.Wait() }()
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after SIGTERM\n%s", logs.String())
	}
	took := time.Since(start)
	t.Logf("exited %s after SIGTERM", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("exit took %s (limit 5 s)", took)
	}
	stopping := false
	for len(notes) > 0 {
		if <-notes == "STOPPING=1" {
			stopping = true
		}
	}
	if !stopping {
		t.Error("no STOPPING=1")
	}
	if strings.Contains(logs.String(), "time=") {
		t.Errorf("under the journal, lines carry a time stamp:\n%s", logs.String())
	}
	// The hub's directory saw the goodbye: offline, and the last state idle.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var devs []struct {
			ID, Status string
			State      json.RawMessage
		}
		resp, err := http.Get(base + "/api/devices")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&devs)
			resp.Body.Close()
		}
		var last string
		for _, d := range devs {
			if d.ID == "sigterm-device" {
				last = fmt.Sprintf("%s %s", d.Status, d.State)
				if d.Status == "offline" && strings.Contains(string(d.State), `"state":"idle"`) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("directory: %q, want offline and idle", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func postCommand(t *testing.T, base, id, cmd string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/devices/"+id+"/cmd", "application/json", strings.NewReader(cmd))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
