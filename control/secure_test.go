package control_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/internal/freeport"
)

// secureMosquitto is Debian's mosquitto as a fleet would run it: no
// anonymous clients, a password file made with mosquitto_passwd, an ACL
// file that confines each device to its own topics, and a TLS listener
// (optionally requiring client certificates). A second, plain listener on
// loopback serves the tests' observer (user "admin").
type secureMosquitto struct {
	plain, tls string // host:port
	conf       string
	cmd        *exec.Cmd
	log        bytes.Buffer
}

const (
	adminUser, adminPass = "admin", "admin-pa55"
	devicePass           = "device-pa55"
)

func freePort(t *testing.T) string {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

// startSecureMosquitto runs mosquitto with TLS, passwords and an ACL for
// the given device ids (each is also its MQTT user name).
func startSecureMosquitto(t *testing.T, pki testPKI, requireCert bool, devices ...string) *secureMosquitto {
	t.Helper()
	if _, err := os.Stat(mosquittoPath); err != nil {
		t.Fatalf("mosquitto is needed for this test (%v): run `make test-deps`", err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	mkpw := func(args ...string) {
		out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	mkpw("-c", "-b", pw, adminUser, adminPass)
	var acl strings.Builder
	fmt.Fprintf(&acl, "user %s\ntopic readwrite camagent/#\ntopic readwrite homeassistant/#\n\n", adminUser)
	for _, id := range devices {
		mkpw("-b", pw, id, devicePass)
	}
	// The ACL docs/mqtt.md recommends: each device user (named as the
	// device) reads its commands and writes its other topics.
	acl.WriteString(`pattern read  camagent/%u/cmd
pattern write camagent/%u/status
pattern write camagent/%u/state
pattern write camagent/%u/reply
pattern write camagent/%u/events
pattern write homeassistant/+/%u/+/config
`)
	aclFile := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclFile, []byte(acl.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &secureMosquitto{plain: "127.0.0.1:" + freePort(t), tls: "127.0.0.1:" + freePort(t)}
	_, plainPort, _ := net.SplitHostPort(m.plain)
	_, tlsPort, _ := net.SplitHostPort(m.tls)
	conf := fmt.Sprintf(`# written by camagent's control tests
user root
per_listener_settings false
allow_anonymous false
password_file %s
acl_file %s
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type subscribe

listener %s 127.0.0.1

listener %s 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate %t
`, pw, aclFile, plainPort, tlsPort, pki.CA, pki.ServerCert, pki.ServerKey, requireCert)
	m.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(mosquittoPath, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = &m.log, &m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		_ = m.cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log.String())
		}
	})
	for _, addr := range []string{m.plain, m.tls} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("mosquitto not listening on %s after 5 s: %v\n%s", addr, err, m.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return m
}

// observeAs is observe with a user name, a password and a topic filter.
func observeAs(t *testing.T, addr, user, pass, filter string) *observer {
	t.Helper()
	o := &observer{signal: make(chan struct{})}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID(fmt.Sprintf("observer-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	o.c = paho.NewClient(opts)
	if err := waitTok(o.c.Connect()); err != nil {
		t.Fatalf("observer connect: %v", err)
	}
	t.Cleanup(func() { o.c.Disconnect(0) })
	if err := waitTok(o.c.Subscribe(filter, 1, o.record)); err != nil {
		t.Fatalf("observer subscribe: %v", err)
	}
	return o
}

// exerciseCommands runs the command repertoire of done-when 1 against a
// device: join, status, leave, duplicate id, malformed JSON, wrong types,
// unknown action, oversize payload; each must get its one precise reply,
// and the device must still serve afterwards.
func exerciseCommands(t *testing.T, o *observer, a *fakeAgent, tp control.Topics) {
	t.Helper()
	start := time.Now()
	o.send(t, tp, `{"id":"j1","action":"join","channel":"lobby","uid":42,"extra":"ignored"}`)
	if r := o.reply(t, tp, "j1"); !r.OK || r.State == nil || r.State.State != "joined" || r.State.Channel != "lobby" || r.State.UID != 42 {
		t.Fatalf("join reply %+v", r)
	}
	o.waitFor(t, 0, 5*time.Second, "joined state", isState(tp.State(), "joined"))
	o.send(t, tp, `{"id":"s1","action":"status"}`)
	if r := o.reply(t, tp, "s1"); !r.OK || r.State.State != "joined" {
		t.Fatalf("status reply %+v", r)
	}
	o.send(t, tp, `{"id":"j1","action":"join","channel":"lobby","uid":42}`) // redelivery
	o.send(t, tp, `{"id":"l1","action":"leave"}`)
	if r := o.reply(t, tp, "l1"); !r.OK || r.State.State != "idle" {
		t.Fatalf("leave reply %+v", r)
	}
	if n := o.repliesTo(tp, "j1"); n != 2 {
		t.Fatalf("%d replies to j1, want 2", n)
	}
	if n := a.count("j1"); n != 1 {
		t.Fatalf("j1 ran %d times, want 1", n)
	}

	a.mu.Lock()
	before := len(a.calls)
	a.mu.Unlock()
	for _, tc := range []struct{ id, payload, err string }{
		{"w1", `{"id":"w1","action":"join","channel":["a"]}`, `field "channel" must be a string, not an array`},
		{"w2", `{"id":"w2","action":"join","channel":"c","uid":"7"}`, `field "uid" must be a number, not a string`},
		{"w3", `{"id":"w3","action":"join","channel":"c","uid":-3}`, `field "uid" must be an integer`},
		{"u1", `{"id":"u1","action":"reboot"}`, `unknown action "reboot" (want join, leave, status, snapshot or privacy)`},
		{"", `{"id":"big","action":"status","pad":"` + strings.Repeat("x", control.MaxCommandSize) + `"}`, `more than the 16384 allowed`},
		{"", `{"id":"bad","action":`, `invalid JSON`},
		{"", `["join"]`, `command must be a JSON object, not an array`},
	} {
		m := o.mark()
		o.send(t, tp, tc.payload)
		_, msg := o.waitFor(t, m, 5*time.Second, "reply to "+tc.payload[:min(len(tc.payload), 40)], func(m message) bool { return m.topic == tp.Reply() })
		var r control.Reply
		if err := json.Unmarshal([]byte(msg.payload), &r); err != nil {
			t.Fatalf("reply %s: %v", msg.payload, err)
		}
		if r.OK || r.ID != tc.id || !strings.Contains(r.Error, tc.err) {
			t.Fatalf("reply to %.60s: %s; want id %q and error %q", tc.payload, msg.payload, tc.id, tc.err)
		}
	}
	a.mu.Lock()
	ran := len(a.calls) - before
	a.mu.Unlock()
	if ran != 0 {
		t.Fatalf("handler ran %d times for refused commands", ran)
	}
	// Still serving.
	o.send(t, tp, `{"id":"s2","action":"status"}`)
	if r := o.reply(t, tp, "s2"); !r.OK || r.State.State != "idle" {
		t.Fatalf("status after refusals %+v", r)
	}
	t.Logf("command repertoire answered in %v", time.Since(start).Round(time.Millisecond))
}

func startFakeAgent(t *testing.T, opts control.Options) (*fakeAgent, *device) {
	t.Helper()
	a := &fakeAgent{state: control.State{State: control.StateIdle}}
	var d *device
	a.dev = func() *control.Client { return d.Client }
	opts.Handler = a.handle
	d = startDevice(t, opts)
	if err := d.PublishState(a.state); err != nil {
		t.Fatal(err)
	}
	return a, d
}

// TestCommandsSecureBrokers is done-when 1: the command repertoire against
// the embedded broker and against mosquitto over TLS with passwords and an
// ACL, with and without client certificates.
func TestCommandsSecureBrokers(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		e := startEmbedded(t)
		o := observe(t, e.Addr(), "cam-e")
		a, d := startFakeAgent(t, control.Options{URL: "tcp://" + e.Addr(), ID: "cam-e"})
		exerciseCommands(t, o, a, d.Topics())
	})
	pki := newTestPKI(t)
	for _, requireCert := range []bool{false, true} {
		name := "mosquitto-tls-acl"
		if requireCert {
			name = "mosquitto-tls-client-cert-acl"
		}
		t.Run(name, func(t *testing.T) {
			const id = "cam-tls"
			m := startSecureMosquitto(t, pki, requireCert, id, "cam-other")
			files := control.TLSFiles{CAFile: pki.CA}
			if requireCert {
				files.CertFile, files.KeyFile = pki.ClientCert, pki.ClientKey
				files.ServerName = "localhost" // the certificate names it, and 127.0.0.1
			}
			tlsCfg, err := files.Config()
			if err != nil {
				t.Fatal(err)
			}
			o := observeAs(t, m.plain, adminUser, adminPass, "camagent/#")
			ha := observeAs(t, m.plain, adminUser, adminPass, "homeassistant/#")
			a, d := startFakeAgent(t, control.Options{
				URL: "ssl://" + m.tls, ID: id, Username: id, Password: devicePass, TLS: tlsCfg,
				HomeAssistant: control.HomeAssistant{Prefix: "homeassistant"},
			})
			tp := d.Topics()
			o.waitFor(t, 0, 5*time.Second, "online", is(tp.Status(), "online"))
			// The ACL lets the device announce itself to Home Assistant.
			ha.waitFor(t, 0, 5*time.Second, "discovery", func(m message) bool {
				return m.topic == "homeassistant/button/"+id+"/leave/config"
			})
			exerciseCommands(t, o, a, tp)
			checkConfined(t, m, o, tlsCfg, id)
			if requireCert {
				// Without a client certificate the broker refuses the handshake.
				noCert, _ := control.TLSFiles{CAFile: pki.CA}.Config()
				if err := tryConnect("ssl://"+m.tls, id, devicePass, noCert); err == nil {
					t.Fatal("connected without a client certificate")
				} else {
					t.Logf("without a client certificate: %v", err)
				}
			}
			// A broker certificate from another CA is refused.
			other, _ := control.TLSFiles{CAFile: pki.OtherCA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}.Config()
			if err := tryConnect("ssl://"+m.tls, id, devicePass, other); err == nil {
				t.Fatal("connected to a broker whose certificate no trusted CA signed")
			}
			// A wrong password is refused.
			if err := tryConnect("ssl://"+m.tls, id, "wrong", tlsCfg); err == nil {
				t.Fatal("connected with a wrong password")
			}
		})
	}
}

// checkConfined shows that the ACL confines a device user to its own
// topics: it cannot command, or read the commands of, another device.
func checkConfined(t *testing.T, m *secureMosquitto, o *observer, tlsCfg *tls.Config, id string) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("ssl://" + m.tls).SetClientID("intruder").
		SetUsername(id).SetPassword(devicePass).SetTLSConfig(tlsCfg).SetAutoReconnect(false)
	c := paho.NewClient(opts)
	if err := waitTok(c.Connect()); err != nil {
		t.Fatalf("connect as %s: %v", id, err)
	}
	defer c.Disconnect(0)
	// mosquitto 2.0 grants a subscription the ACL forbids but delivers
	// nothing on it: what counts is what arrives.
	var got []string
	var gotMu sync.Mutex
	if err := waitTok(c.Subscribe("camagent/#", 1, func(_ paho.Client, m paho.Message) {
		gotMu.Lock()
		got = append(got, m.Topic()+" "+string(m.Payload()))
		gotMu.Unlock()
	})); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	// Another device's commands do not reach it, its own do.
	if err := waitTok(o.c.Publish("camagent/cam-other/cmd", 1, false, `{"id":"o","action":"status"}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := waitTok(o.c.Publish("camagent/"+id+"/cmd", 1, false, `{"id":"acl-marker","action":"status"}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	// It cannot command another device, nor write where it has no business.
	mark := o.mark()
	if err := waitTok(c.Publish("camagent/cam-other/cmd", 1, false, `{"id":"x","action":"leave"}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := waitTok(c.Publish("camagent/"+id+"/events", 1, false, `{"event":"marker"}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	o.waitFor(t, mark, 5*time.Second, "marker", is("camagent/"+id+"/events", `{"event":"marker"}`))
	deadline := time.Now().Add(5 * time.Second)
	for {
		gotMu.Lock()
		all := strings.Join(got, "\n")
		gotMu.Unlock()
		if strings.Contains(all, "acl-marker") {
			if strings.Contains(all, "cam-other") {
				t.Errorf("the ACL let %s read another device's topic:\n%s", id, all)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not receive its own command; got:\n%s", id, all)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, msg := range o.all("camagent/cam-other/cmd") {
		if strings.Contains(msg.payload, `"x"`) {
			t.Errorf("the ACL let %s command another device: %s", id, msg.payload)
		}
	}
}

func tryConnect(url, user, pass string, cfg *tls.Config) error {
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("try-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetTLSConfig(cfg).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	err := waitTok(c.Connect())
	if err == nil {
		c.Disconnect(0)
	}
	return err
}
