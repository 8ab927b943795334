package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/internal/freeport"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestCredentialFileIsBoth runs the built agent with only credentialFile set, against Debian's
// mosquitto with a password file and against a stand-in hub that records what it is sent:
// the agent logs in to the broker as its device id with the credential as the password, and
// asks the hub for a token with the same credential as its bearer key. camagent check and the
// agent's log name the credential by its key id only; the secret appears nowhere.
func TestCredentialFileIsBoth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const mosquitto = "/usr/sbin/mosquitto"
	if _, err := os.Stat(mosquitto); err != nil {
		t.Fatalf("mosquitto is needed for this test (%v): run `make test-deps`", err)
	}
	dir := t.TempDir()
	secret := make([]byte, 32)
	rand.Read(secret)
	secretText := base64.RawURLEncoding.EncodeToString(secret)
	cred := "cam_d_5e1f0a2b_" + secretText
	credFile := write(t, filepath.Join(dir, "credential"), cred+"\n")
	const id, adminPass = "cred-device", "admin-pa55"

	// The broker: no anonymous clients; the device's account is its id and credential.
	pw := filepath.Join(dir, "passwd")
	for _, args := range [][]string{{"-c", "-b", pw, "admin", adminPass}, {"-b", pw, id, cred}} {
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	_, port := splitPort(addr)
	conf := write(t, filepath.Join(dir, "mosquitto.conf"), fmt.Sprintf(
		"user root\nper_listener_settings false\nallow_anonymous false\npassword_file %s\npersistence false\nlog_dest stderr\nlistener %s 127.0.0.1\n", pw, port))
	var brokerLog bytes.Buffer
	broker := exec.Command(mosquitto, "-c", conf)
	broker.Stdout, broker.Stderr = &brokerLog, &brokerLog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Signal(syscall.SIGTERM); broker.Wait() })
	waitListening(t, addr)

	// The stand-in hub: healthy, refuses tokens, records every request's Authorization.
	var mu sync.Mutex
	var seen []string
	hubSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path == "/healthz" {
			w.Write([]byte("ok"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":{"code":"FORBIDDEN","message":"recorded"}}`))
	}))
	defer hubSrv.Close()

	env := []string{"CAMAGENT_CREDENTIAL_FILE=" + credFile, "CAMAGENT_STATE_DIR=" + filepath.Join(dir, "state")}
	flags := []string{"--id", id, "--mqtt", "tcp://" + addr, "--hub", hubSrv.URL, "--speaker", "null"}

	// camagent check, in process.
	var out bytes.Buffer
	code := run(append([]string{"check"}, flags...), env, &out, &out)
	if code != 0 || !strings.Contains(out.String(), `ok   device credential 5e1f0a2b (MQTT user "cred-device")`) ||
		!strings.Contains(out.String(), "ok   broker") {
		t.Fatalf("check: exit %d\n%s\nbroker log:\n%s", code, out.String(), brokerLog.String())
	}
	if strings.Contains(out.String(), secretText) {
		t.Fatalf("check printed the credential:\n%s", out.String())
	}

	// The agent, as a process.
	bin := filepath.Join(dir, "camagent")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	var logs bytes.Buffer
	agent := exec.Command(bin, flags...)
	agent.Env = append(os.Environ(), env...)
	agent.Stdout, agent.Stderr = &logs, &logs
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer agent.Process.Kill()

	replies := make(chan string, 10)
	online := make(chan struct{}, 10)
	admin := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("cred-test-admin").
		SetUsername("admin").SetPassword(adminPass).SetAutoReconnect(false))
	if tok := admin.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("admin connect: %v", tok.Error())
	}
	defer admin.Disconnect(0)
	admin.Subscribe("camagent/"+id+"/#", 1, func(_ paho.Client, m paho.Message) {
		switch {
		case strings.HasSuffix(m.Topic(), "/status") && string(m.Payload()) == "online":
			online <- struct{}{}
		case strings.HasSuffix(m.Topic(), "/reply"):
			replies <- string(m.Payload())
		}
	}).WaitTimeout(5 * time.Second)
	select {
	case <-online: // logged in as its id with the credential
	case <-time.After(15 * time.Second):
		t.Fatalf("the agent never came online\n%s\nbroker log:\n%s", logs.String(), brokerLog.String())
	}
	admin.Publish("camagent/"+id+"/cmd", 1, false, `{"id":"j1","action":"join","channel":"porch"}`).WaitTimeout(5 * time.Second)
	select {
	case r := <-replies:
		if !strings.Contains(r, `"ok":false`) || !strings.Contains(r, "recorded") {
			t.Errorf("join reply %s, want the stand-in hub's refusal", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no reply to the join\n%s", logs.String())
	}
	mu.Lock()
	got := strings.Join(seen, "\n")
	mu.Unlock()
	if !strings.Contains(got, "POST /api/token Bearer "+cred) {
		t.Errorf("the hub saw %q, want a token request with the credential as the bearer key", got)
	}

	agent.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- agent.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop")
	}
	if !strings.Contains(logs.String(), "credential=5e1f0a2b") {
		t.Errorf("the log does not name the credential's key id:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), secretText) || strings.Contains(logs.String(), adminPass) {
		t.Errorf("the log shows a secret:\n%s", logs.String())
	}
}

func splitPort(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
