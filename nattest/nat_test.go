//go:build nat

// Package nattest runs the hub, a device agent and a viewer in network namespaces that stand
// for the Internet and two home networks behind NATs (make test-nat; needs root, ip and
// iptables). Every address lives inside namespaces the test creates, and it removes them.
//
//	device LAN 192.168.10.0/24        public 203.0.113.0/24         viewer LAN 192.168.20.0/24
//	[dev] .2 ── .1 [rdev] .2 ───── br ── .1 [pub: camhub] ── br ───── .3 [rview] .1 ── .2 [view]
//	              MASQUERADE                                      MASQUERADE (+ UDP filters)
package nattest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/wav"
)

const (
	hubIP    = "203.0.113.1"
	deviceID = "nat-device"
	toneHz   = 440
)

type lab struct {
	t      *testing.T
	prefix string
	dir    string
}

func (l *lab) ns(name string) string { return l.prefix + name }

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) in(ns string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", l.ns(ns)}, args...)...)
}

// link connects namespace a (interface an, address aAddr) to b (bn, bAddr; "" for none).
func (l *lab) link(a, an, aAddr, b, bn, bAddr string) {
	l.t.Helper()
	l.run("ip", "link", "add", an, "netns", l.ns(a), "type", "veth", "peer", "name", bn, "netns", l.ns(b))
	for _, e := range [][3]string{{a, an, aAddr}, {b, bn, bAddr}} {
		if e[2] != "" {
			l.in(e[0], "ip", "addr", "add", e[2], "dev", e[1])
		}
		l.in(e[0], "ip", "link", "set", e[1], "up")
	}
}

func (l *lab) build() {
	t := l.t
	names := []string{"pub", "rdev", "dev", "rview", "view"}
	t.Cleanup(func() {
		for _, n := range names {
			exec.Command("ip", "netns", "del", l.ns(n)).Run()
		}
	})
	for _, n := range names {
		l.run("ip", "netns", "add", l.ns(n))
		l.in(n, "ip", "link", "set", "lo", "up")
	}
	// The public segment: a bridge in the hub's namespace joins both routers' WAN sides.
	l.in("pub", "ip", "link", "add", "br0", "type", "bridge")
	l.in("pub", "ip", "addr", "add", hubIP+"/24", "dev", "br0")
	l.in("pub", "ip", "link", "set", "br0", "up")
	for _, r := range []struct{ router, wan, port, lan, host, net string }{
		{"rdev", "203.0.113.2/24", "pdev", "192.168.10.1/24", "dev", "192.168.10"},
		{"rview", "203.0.113.3/24", "pview", "192.168.20.1/24", "view", "192.168.20"},
	} {
		l.link(r.router, "wan", r.wan, "pub", r.port, "")
		l.in("pub", "ip", "link", "set", r.port, "master", "br0")
		l.link(r.host, "eth0", r.net+".2/24", r.router, "lan", r.lan)
		l.in(r.host, "ip", "route", "add", "default", "via", r.net+".1")
		l.in(r.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		l.in(r.router, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
		// A home router: nothing comes in that was not asked for.
		l.in(r.router, "iptables", "-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		l.in(r.router, "iptables", "-A", "FORWARD", "-i", "wan", "-j", "DROP")
	}
}

// dropAllUDP, on the viewer's router, is a path dying mid-call: the router forgets its
// mappings and passes no UDP any more, in either direction.
// apiKey is the viewer backend's API key, made by camhub key add at the test's start.
var apiKey string

var dropAllUDP = []string{"-I", "FORWARD", "-p", "udp", "-j", "DROP"}

// filter inserts an iptables rule ("-I", chain, …) on the viewer's router until t ends.
func (l *lab) filter(t *testing.T, rule []string) {
	l.in("rview", append([]string{"iptables"}, rule...)...)
	t.Cleanup(func() { l.in("rview", append([]string{"iptables", "-D"}, rule[1:]...)...) })
}

// start runs a binary inside a namespace until the test ends; its output goes to a log file.
func (l *lab) start(ns, name string, env []string, args ...string) *exec.Cmd {
	l.t.Helper()
	logf, err := os.Create(filepath.Join(l.dir, name+".log"))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(ns)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if l.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			l.t.Logf("--- %s log (last 16 kB)\n%s", name, tail(b, 16384))
		}
	})
	return cmd
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func goBuild(t *testing.T, dir string, pkgs ...string) {
	for _, p := range pkgs {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(p)), p).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", p, err, out)
		}
	}
}

type result struct {
	Frames       int      `json:"frames"`
	ICERestarts  uint64   `json:"iceRestarts"`
	ICEServers   []string `json:"iceServers"`
	Video, Audio string
	JoinMS       int64   `json:"joinMs"`
	FirstMS      int64   `json:"firstFrameMs"`
	Total        float64 `json:"totalSeconds"`
	Error        string  `json:"error"`
}

func TestNAT(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the NAT test needs root (network namespaces, iptables)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run make test-deps", tool)
		}
	}
	dir := t.TempDir()
	l := &lab{t: t, prefix: fmt.Sprintf("cnat%d-", os.Getpid()%100000), dir: dir}
	goBuild(t, dir, "github.com/camagent/camagent/cmd/camhub", "github.com/camagent/camagent/cmd/camagent",
		"github.com/camagent/camagent/nattest/viewer")
	l.build()

	hubState := filepath.Join(dir, "hub")
	// Identities as an operator makes them: the device's credential and the viewer backend's
	// API key, with the camhub CLI on the hub's state directory.
	camhubCLI := func(args ...string) string {
		out, err := exec.Command(filepath.Join(dir, "camhub"), append(args, "--state-dir", hubState)...).Output()
		if err != nil {
			t.Fatalf("camhub %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	deviceCred := camhubCLI("device", "add", deviceID)
	apiKey = camhubCLI("key", "add", "nat-viewer", "--actions", "token,command,view,talk", "--devices", "*",
		"--apps", "demo", "--channels", "*", "--max-ttl", "24h")
	hubCfg := fmt.Sprintf(`listen: %[1]s:8443
mqtt: embedded
mqttListen: %[1]s:1883
stateDir: %[2]s
iceLoopbackOnly: "false"
logLevel: info
network:
  udpPort: 50000
  tcpPort: 50001
  turn:
    embedded: true
    tlsPort: 5349
`, hubIP, hubState)
	writeFile(t, filepath.Join(dir, "camhub.yaml"), hubCfg)
	l.start("pub", "camhub", nil, filepath.Join(dir, "camhub"), "--config", filepath.Join(dir, "camhub.yaml"))
	certFile := filepath.Join(hubState, "tls-cert.pem")
	waitFor(t, 20*time.Second, "the hub's self-signed certificate", func() bool {
		_, err := os.Stat(certFile)
		return err == nil
	})
	time.Sleep(300 * time.Millisecond) // the key is written before the certificate: both are there

	speaker := filepath.Join(dir, "speaker.wav")
	agentCfg := fmt.Sprintf(`id: %[1]s
mqtt: tcp://%[2]s:1883
hub: https://%[2]s:8443
mqttUsername: %[1]s
credentialFile: %[6]s
# MQTT runs over plain TCP between the namespaces (the embedded broker has no TLS listener yet).
allowInsecureTransport: true
camera: test
speaker: wav:%[3]s
stateDir: %[4]s
hubCA: %[5]s
`, deviceID, hubIP, speaker, filepath.Join(dir, "agent"), certFile, filepath.Join(dir, "credential"))
	writeFile(t, filepath.Join(dir, "credential"), deviceCred+"\n")
	writeFile(t, filepath.Join(dir, "camagent.yaml"), agentCfg)
	// The agent trusts the hub through hubCA; the viewer helper (and its TURN over TLS) through
	// the system roots.
	trust := []string{"SSL_CERT_FILE=" + certFile}
	l.start("dev", "camagent", nil, filepath.Join(dir, "camagent"), "--config", filepath.Join(dir, "camagent.yaml"))

	for _, sc := range []struct {
		name   string
		rules  [][]string // iptables rules on the viewer's router
		expect string     // the viewer's selected candidate type
		args   []string   // viewer flags
	}{
		{"direct", nil, "", nil},
		{"udp-only-to-turn", [][]string{{"-I", "FORWARD", "-i", "lan", "-p", "udp", "!", "--dport", "3478", "-j", "DROP"}}, "relay/", nil},
		{"no-udp", [][]string{{"-I", "FORWARD", "-i", "lan", "-p", "udp", "-j", "DROP"}}, "relay/", nil},
		// No UDP, and of TCP only HTTPS and TURN over TLS: the relay over TLS, its certificate the
		// hub's self-signed one (which the viewer trusts as it trusts the hub's).
		{"turn-tls", [][]string{{"-I", "FORWARD", "-i", "lan", "-p", "udp", "-j", "DROP"},
			{"-I", "FORWARD", "-i", "lan", "-p", "tcp", "-m", "multiport", "--dports", "3478,50001", "-j", "DROP"}}, "relay/", nil},
		// No UDP and no TURN port: only the hub's ICE-TCP port is left.
		{"ice-tcp", [][]string{{"-I", "FORWARD", "-i", "lan", "-p", "udp", "-j", "DROP"},
			{"-I", "FORWARD", "-i", "lan", "-p", "tcp", "--dport", "3478", "-j", "DROP"}}, "host/tcp", []string{"-ice-tcp"}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			for _, r := range sc.rules {
				l.filter(t, r)
			}
			res, _ := viewer(t, l, trust, "nat-"+sc.name, speaker, nil, sc.args...)
			t.Logf("%s: %d frames, first after %d ms, join %d ms, video over %s, audio over %s, ICE servers %v",
				sc.name, res.Frames, res.FirstMS, res.JoinMS, res.Video, res.Audio, res.ICEServers)
			if sc.expect != "" {
				for what, typ := range map[string]string{"video": res.Video, "audio": res.Audio} {
					if !strings.HasPrefix(typ, sc.expect) {
						t.Errorf("%s went over %q, want a %s candidate", what, typ, sc.expect)
					}
				}
			} else if strings.HasPrefix(res.Video, "relay") || strings.HasPrefix(res.Audio, "relay") {
				t.Errorf("direct path open, yet media went through TURN (video %s, audio %s)", res.Video, res.Audio)
			}
		})
	}
	// A call on the direct path, then the viewer's network stops passing UDP mid-call (as when
	// a NAT forgets its mappings or a network starts filtering): the viewer restarts ICE over
	// its signalling socket, finds the relay over TCP, and video and talk resume on the same
	// session. The viewer's tone at the device's speaker, checked after the cut, shows that
	// its publish connection came back too.
	t.Run("path-dies", func(t *testing.T) {
		cut := func() { l.filter(t, dropAllUDP) }
		before, after := viewer(t, l, trust, "nat-path-dies", speaker, cut, "-after-cut", "30")
		t.Logf("before the cut: video over %s, audio over %s; after: %d frames, first %d ms after the cut, %d ICE restarts, video over %s, audio over %s",
			before.Video, before.Audio, after.Frames, after.FirstMS, after.ICERestarts, after.Video, after.Audio)
		if strings.HasPrefix(before.Video, "relay") {
			t.Errorf("before the cut the video already went through TURN (%s)", before.Video)
		}
		if after.ICERestarts == 0 {
			t.Error("the call came back without an ICE restart")
		}
		for what, typ := range map[string]string{"video": after.Video, "audio": after.Audio} {
			if !strings.HasPrefix(typ, "relay/") {
				t.Errorf("after the cut %s went over %q, want the relay", what, typ)
			}
		}
	})
	t.Run("chromium", func(t *testing.T) { chromium(t, l, speaker) })
}

// chromium opens the viewer page in headless Chromium inside the viewer's namespace, over
// HTTPS at the hub's public address (the self-signed certificate accepted), watches the device
// and holds Talk: the fake microphone's 1000 Hz tone must reach the device's speaker. Then the
// viewer's network stops passing UDP mid-call: the SDK must restart ICE (over TURN/TCP), the
// picture must move again and Talk must reach the speaker again.
func chromium(t *testing.T, l *lab, speaker string) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed: run make test-deps")
	}
	if _, err := os.Stat("../e2e/browser/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed in e2e/browser: run make test-deps")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns("view"), node, "browser.mjs")
	cmd.Env = append(os.Environ(), "CAMAGENT_HUB_URL=https://"+hubIP+":8443", "CAMAGENT_DEVICE_ID="+deviceID,
		"CAMAGENT_API_KEY="+apiKey, "CAMAGENT_CUT=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	var r struct {
		Frames       int
		FirstFrameMs int64
		OutageMs     int64
		ICERestarts  int
		Secure       bool
		Error        string
	}
	read := func(what string) {
		line, _ := lines.ReadString('\n')
		t.Logf("chromium %s: %s", what, strings.TrimSpace(line))
		r.Error = ""
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Error != "" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("chromium viewer %s: %q (%v)\n%s", what, line, err, tail([]byte(stderr.String()), 4096))
		}
	}
	read("call")
	if r.Frames < 30 || !r.Secure {
		t.Errorf("chromium: %d frames, secure context %v", r.Frames, r.Secure)
	}
	if s := talkSeconds(t, speaker, 0); s < 1 {
		t.Errorf("the browser's tone reached the device's speaker for only %.1f s (want ≥ 1 s)", s)
	}

	// The viewer's network stops passing UDP, both ways, mid-call.
	l.filter(t, dropAllUDP)
	samples, _, _, _ := wav.ReadFile(speaker)
	t.Logf("UDP cut at %s", time.Now().UTC().Format("15:04:05.000"))
	io.WriteString(stdin, "cut\n")
	read("after the cut")
	if err := cmd.Wait(); err != nil {
		t.Errorf("chromium viewer: %v\n%s", err, tail([]byte(stderr.String()), 4096))
	}
	if r.Frames < 30 || r.ICERestarts == 0 {
		t.Errorf("after the cut: %d frames, %d ICE restarts; want 30 frames through a restarted path", r.Frames, r.ICERestarts)
	}
	t.Logf("after the cut: the picture stood still for %d ms; %d ICE restarts", r.OutageMs, r.ICERestarts)
	if s := talkSeconds(t, speaker, len(samples)); s < 1 {
		t.Errorf("after the cut the browser's tone reached the device's speaker for only %.1f s (want ≥ 1 s)", s)
	}
}

// talkSeconds is how long the browser's 1000 Hz tone plays in the device speaker's WAV, from
// sample from on.
func talkSeconds(t *testing.T, speaker string, from int) float64 {
	t.Helper()
	samples, _, _, err := wav.ReadFile(speaker)
	if err != nil {
		t.Fatalf("device speaker WAV: %v", err)
	}
	const win = device.SampleRate / 10
	talk := 0
	for i := from; i+win <= len(samples); i += win {
		w := samples[i : i+win]
		if f := audio.DominantFrequency(w, device.SampleRate); audio.RMS(w) > 300 && f > 980 && f < 1020 {
			talk++
		}
	}
	s := float64(talk) / 10
	t.Logf("device speaker: %.1f s of the browser's 1000 Hz tone (from sample %d)", s, from)
	return s
}

// viewer runs the viewer helper in the viewer's namespace: it makes the device join channel,
// receives its video and talks back; while it holds the call, the device's speaker must play
// the viewer's tone. With cut (and -after-cut in args), cut runs once the call is up, and the
// viewer's second result tells how the call came back; the speaker is checked after that.
func viewer(t *testing.T, l *lab, env []string, channel, speaker string, cut func(), args ...string) (result, result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", l.ns("view"), filepath.Join(l.dir, "viewer"),
		"-hub", "https://" + hubIP + ":8443", "-key", apiKey, "-device", deviceID, "-channel", channel}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
		if t.Failed() {
			t.Logf("viewer stderr:\n%s", tail([]byte(stderr.String()), 4096))
		}
	}()
	lines := bufio.NewReader(stdout)
	read := func() result {
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("viewer printed no result: %v", err)
		}
		var res result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			t.Fatalf("viewer result %q: %v", line, err)
		}
		if res.Error != "" {
			t.Fatalf("viewer: %s", res.Error)
		}
		return res
	}
	res := read()
	var after result
	if cut != nil {
		cut()
		io.WriteString(stdin, "cut\n")
		after = read()
	}
	// The viewer's tone, at the device's speaker (the WAV the agent writes).
	var f, rms float64
	ok := waitFor(t, 15*time.Second, "", func() bool {
		samples, _, _, err := wav.ReadFile(speaker)
		if err != nil || len(samples) < device.SampleRate {
			return false
		}
		last := samples[len(samples)-device.SampleRate/2:]
		f, rms = audio.DominantFrequency(last, device.SampleRate), audio.RMS(last)
		return f > toneHz-5 && f < toneHz+5 && rms > 1000
	})
	if !ok {
		t.Errorf("device speaker: %.1f Hz at RMS %.0f, want the viewer's %d Hz tone", f, rms, toneHz)
	}
	return res, after
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			if what != "" {
				t.Fatalf("no %s after %s", what, d)
			}
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
