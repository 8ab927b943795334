package systemd_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/systemd"
	"gopkg.in/yaml.v3"
)

// The shipped samples list every key with its default value: loaded over a zero
// configuration (so that a key missing from the sample would show), with the host-derived
// values filled in, they equal Defaults().
func TestSamplesEqualDefaults(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	var a agent.Config
	if err := config.LoadFile("camagent.yaml", &a); err != nil {
		t.Fatal(err)
	}
	a.Derive()
	sameYAML(t, "camagent.yaml", a, agent.Defaults())
	allKeys(t, "camagent.yaml", &a)

	var h hub.Config
	if err := config.LoadFile("camhub.yaml", &h); err != nil {
		t.Fatal(err)
	}
	h.Derive()
	sameYAML(t, "camhub.yaml", h, hub.Defaults())
	allKeys(t, "camhub.yaml", &h)
}

// sameYAML compares two configurations as YAML, where a nil and an empty list or map are
// the same thing.
func sameYAML(t *testing.T, name string, got, want any) {
	t.Helper()
	g, _ := yaml.Marshal(got)
	w, _ := yaml.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s differs from the defaults:\n--- sample\n%s--- Defaults()\n%s", name, g, w)
	}
}

// allKeys checks that the sample spells out every key of the configuration.
func allKeys(t *testing.T, name string, cfg any) {
	t.Helper()
	b, _ := os.ReadFile(name)
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(reflect.TypeOf(cfg).Elem()) {
		if _, ok := top[key]; !ok {
			t.Errorf("%s does not show key %q", name, key)
		}
	}
}

// yamlKeys lists a configuration's top-level keys, with those of inline structs.
func yamlKeys(typ reflect.Type) []string {
	var keys []string
	for i := 0; i < typ.NumField(); i++ {
		key, opts, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		switch {
		case key == "" && opts == "inline":
			keys = append(keys, yamlKeys(typ.Field(i).Type)...)
		case key != "-" && key != "":
			keys = append(keys, key)
		}
	}
	return keys
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)

// The units' sandboxes rate "OK" or better (≤ 2.5 of 10) in systemd-analyze security.
func TestUnitSecurity(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is missing: run make test-deps (Debian package systemd)")
	}
	for _, unit := range []string{"camagent.service", "camhub.service"} {
		out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", unit).CombinedOutput()
		m := exposure.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("%s: no exposure level in the output (%v):\n%s", unit, err, out)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("%s: exposure %s %s", unit, m[1], m[2])
		if score > 2.5 {
			t.Errorf("%s: exposure %.1f > 2.5:\n%s", unit, score, out)
		}
		// The unit's promises, in case a future edit drops one the score barely notices.
		b, _ := os.ReadFile(unit)
		for _, line := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "ProtectSystem=strict",
			"ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "DevicePolicy=closed",
			"CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "StateDirectory=", "MemoryMax=", "TasksMax=", "UMask=0077"} {
			if !strings.Contains(string(b), "\n"+line) {
				t.Errorf("%s lacks %q", unit, strings.TrimSpace(line))
			}
		}
	}
	b, _ := os.ReadFile("camagent.service")
	for _, line := range []string{"SupplementaryGroups=video audio", "DeviceAllow=char-video4linux rw", "DeviceAllow=char-alsa rw", "User=camagent"} {
		if !strings.Contains(string(b), "\n"+line+"\n") {
			t.Errorf("camagent.service lacks %q", line)
		}
	}
}

// listen opens a notify socket like the service manager's and returns its messages.
func listen(t *testing.T, abstract bool) (string, <-chan string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	addr := name
	if abstract {
		name = "@camagent-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		addr = "\x00" + name[1:]
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return name, msgs
}

func TestNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := systemd.Notify("READY=1"); sent || err != nil {
		t.Fatalf("without a socket: %v %v", sent, err)
	}
	for _, abstract := range []bool{false, true} {
		name, msgs := listen(t, abstract)
		t.Setenv("NOTIFY_SOCKET", name)
		if sent, err := systemd.Notify("READY=1"); !sent || err != nil {
			t.Fatalf("%s: %v %v", name, sent, err)
		}
		if m := <-msgs; m != "READY=1" {
			t.Errorf("got %q", m)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0}, {"x", "", 0}, {"30000000", "", 30 * time.Second},
		{"2000000", strconv.Itoa(os.Getpid()), 2 * time.Second}, {"2000000", "1", 0},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		if got := systemd.WatchdogInterval(); got != c.want {
			t.Errorf("%+v: %s", c, got)
		}
	}
}

// Supervise: READY only once ready, pings only while alive, STOPPING at the end.
func TestSupervise(t *testing.T) {
	name, msgs := listen(t, false)
	t.Setenv("NOTIFY_SOCKET", name)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")
	ready := make(chan struct{})
	var beat atomicTime
	beat.set(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { systemd.Supervise(ctx, ready, beat.get, nil); close(done) }()
	select {
	case m := <-msgs:
		t.Fatalf("%q before ready", m)
	case <-time.After(300 * time.Millisecond):
	}
	close(ready)
	if m := <-msgs; m != "READY=1" {
		t.Fatalf("first message %q", m)
	}
	stop := make(chan struct{})
	go func() { // a live loop
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				beat.set(time.Now())
			}
		}
	}()
	for i := 0; i < 3; i++ {
		select {
		case m := <-msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("got %q", m)
			}
		case <-time.After(time.Second):
			t.Fatal("no watchdog ping")
		}
	}
	close(stop) // the loop hangs
	time.Sleep(250 * time.Millisecond)
	for len(msgs) > 0 {
		<-msgs
	}
	select {
	case m := <-msgs:
		t.Fatalf("%q after the loop stopped", m)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	<-done
	if m := <-msgs; m != "STOPPING=1" {
		t.Fatalf("last message %q", m)
	}
}

// docs/configuration.md names every key's environment variable (the hub's network.* keys
// are documented in docs/networking.md).
func TestConfigurationDocListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for prefix, cfg := range map[string]any{"CAMAGENT_": &agent.Config{}, "CAMHUB_": &hub.Config{}} {
		for env, key := range config.EnvKeys(prefix, cfg) {
			if strings.HasPrefix(key, "network.") {
				continue
			}
			if !strings.Contains(string(doc), "`"+env+"`") || !strings.Contains(string(doc), "`"+key+"`") {
				t.Errorf("docs/configuration.md does not document %s (%s)", key, env)
			}
		}
	}
}
