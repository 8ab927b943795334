//go:build nat

package e2e

// Network faults of the matrix (docs/reliability.md), with the device in a network namespace
// of its own behind a router namespace, as a camera on Wi-Fi behind a home router (make
// faults and make test-nat; needs root, ip and iptables, like nattest):
//
//	test process: camhub, broker, viewer        router                   device
//	[root ns] cfNh 10.201.X.1/30 ───── 10.201.X.2 [cfN-r] 10.202.X.1 ───── 10.202.X.2 [cfN-d: camagent]
//
// The root namespace gets one veth (cfNh) and a route to the device's /24, both gone with the
// namespaces at the end. The hub runs in its default (secure) mode: the device has its own
// credential, the viewer a backend's API key. Faults are iptables rules in the router's
// FORWARD chain: DROP for a cut (silent loss, as when Wi-Fi goes), `statistic` for random loss
// (this kernel has no netem).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netLab is the namespaces and the root namespace's end of the link.
type netLab struct {
	t              *testing.T
	router, device string // namespace names
	host           string // root-namespace interface
	hubIP, devIP   string
	rules          [][]string // iptables rules in place on the router
}

func (l *netLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *netLab) in(ns string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// newNetLab builds the namespaces; the test fails at once without root or ip/iptables.
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network faults need root (network namespaces, iptables): run as root, as make test-nat does")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run make test-deps", tool)
		}
	}
	n := os.Getpid() % 100000
	x := os.Getpid()%200 + 20
	l := &netLab{t: t, router: fmt.Sprintf("cf%d-r", n), device: fmt.Sprintf("cf%d-d", n),
		host: fmt.Sprintf("cf%dh", n), hubIP: fmt.Sprintf("10.201.%d.1", x), devIP: fmt.Sprintf("10.202.%d.2", x)}
	t.Cleanup(func() {
		for _, ns := range []string{l.router, l.device} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
		exec.Command("ip", "link", "del", l.host).Run() // gone with the router's end already
	})
	for _, ns := range []string{l.router, l.device} {
		l.run("ip", "netns", "add", ns)
		l.in(ns, "ip", "link", "set", "lo", "up")
	}
	l.run("ip", "link", "add", l.host, "type", "veth", "peer", "name", "wan", "netns", l.router)
	l.run("ip", "addr", "add", l.hubIP+"/30", "dev", l.host)
	l.run("ip", "link", "set", l.host, "up")
	l.in(l.router, "ip", "addr", "add", fmt.Sprintf("10.201.%d.2/30", x), "dev", "wan")
	l.in(l.router, "ip", "link", "set", "wan", "up")
	l.run("ip", "link", "add", "lan", "netns", l.router, "type", "veth", "peer", "name", "eth0", "netns", l.device)
	l.in(l.router, "ip", "addr", "add", fmt.Sprintf("10.202.%d.1/24", x), "dev", "lan")
	l.in(l.router, "ip", "link", "set", "lan", "up")
	l.in(l.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.in(l.device, "ip", "addr", "add", l.devIP+"/24", "dev", "eth0")
	l.in(l.device, "ip", "link", "set", "eth0", "up")
	l.in(l.device, "ip", "route", "add", "default", "via", fmt.Sprintf("10.202.%d.1", x))
	l.run("ip", "route", "add", fmt.Sprintf("10.202.%d.0/24", x), "via", fmt.Sprintf("10.201.%d.2", x))
	return l
}

// drop inserts a rule on the router's FORWARD chain; undo removes every rule inserted.
func (l *netLab) drop(rule ...string) {
	l.t.Helper()
	l.in(l.router, append([]string{"iptables", "-I", "FORWARD"}, rule...)...)
	l.rules = append(l.rules, rule)
}

func (l *netLab) undo() {
	l.t.Helper()
	for _, r := range l.rules {
		l.in(l.router, append([]string{"iptables", "-D", "FORWARD"}, r...)...)
	}
	l.rules = nil
}

// netCall is a call across the lab: camhub (secure mode, https with its self-signed
// certificate), the broker and the viewer in the root namespace, camagent in the device's.
type netCall struct {
	*faultCall
	lab    *netLab
	broker *mqBroker
}

func startNetCall(t *testing.T) *netCall {
	t.Helper()
	l := newNetLab(t)
	hubBin, agentBin := rigBinaries(t)
	dir := t.TempDir()
	// Mosquitto, anonymous, on the link's address (the embedded broker rightly refuses
	// anonymous clients beyond loopback).
	_, mport, _ := strings.Cut(freeAddr(t), ":")
	b := &mqBroker{addr: l.hubIP + ":" + mport, conf: filepath.Join(dir, "mosquitto.conf")}
	conf := fmt.Sprintf("listener %s %s\nallow_anonymous true\npersistence false\nlog_dest stderr\n", mport, l.hubIP)
	must(t, os.WriteFile(b.conf, []byte(conf), 0o644), "write mosquitto.conf")
	b.start(t)
	t.Cleanup(func() { b.kill(syscall.SIGTERM) })
	hubState := filepath.Join(dir, "hub")
	camhub := func(args ...string) string {
		out, err := exec.Command(hubBin, append(args, "--state-dir", hubState)...).Output()
		if err != nil {
			t.Fatalf("camhub %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	const dev = "e2e-faults-net"
	cred := camhub("device", "add", dev)
	key := camhub("key", "add", "faults-viewer", "--actions", "token,command,view,talk", "--devices", "*",
		"--apps", "demo", "--channels", "*", "--max-ttl", "24h")
	_, port, _ := strings.Cut(freeAddr(t), ":")
	h := newHubProc(t, hubBin, b.url())
	h.addr, h.state, h.scheme = l.hubIP+":"+port, hubState, "https"
	h.args = []string{"--listen", h.addr, "--mqtt", b.url(), "--state-dir", hubState, "--log-level", "warn"}
	// The hub writes its self-signed certificate at its first start: trust it from then on.
	h.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	h.start()
	certFile := filepath.Join(hubState, "tls-cert.pem")
	pem, err := os.ReadFile(certFile)
	must(t, err, "the hub's certificate")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("the hub's tls-cert.pem holds no certificate")
	}
	trust := &tls.Config{RootCAs: pool}
	h.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: trust}}

	credFile := filepath.Join(dir, "credential")
	must(t, os.WriteFile(credFile, []byte(cred+"\n"), 0o600), "credential")
	a := newAgentProc(t, agentBin, dev, b.url(), h.url())
	a.netns, a.metrics = l.device, l.devIP+":9464"
	a.env = []string{"CAMAGENT_CREDENTIAL_FILE=" + credFile, "CAMAGENT_HUB_CA=" + certFile,
		"CAMAGENT_ALLOW_INSECURE_TRANSPORT=true"} // MQTT in plain TCP across the lab
	a.start()

	fc := &faultCall{hub: h, agent: a, broker: b.url(), dev: dev, viewerOpts: func(v *rigViewer) {
		v.tls = trust
		v.token = func(ctx context.Context, channel string, uid uint32) (string, error) {
			return hubToken(ctx, h.client, h.url(), key, channel, uid)
		}
	}}
	fc.join(t)
	return &netCall{faultCall: fc, lab: l, broker: b}
}

// cutFault cuts the device's link (every packet through the router dropped) for d, n times.
func cutFault(t *testing.T, nc *netCall, name string, d time.Duration, n int) {
	r := repeatFault(t, nc.faultCall, name, n, 60*time.Second, func() time.Time {
		nc.lab.drop("-j", "DROP")
		time.Sleep(d)
		nc.lab.undo()
		return time.Now()
	})
	r.check(t)
	t.Logf("FAULT %s: %d rejoins of the agent over %d cuts", name, r.last.Rejoins, n)
	sorted := slices.Clone(r.recover)
	slices.Sort(sorted)
	t.Logf("FAULT %s: every recovery, sorted: %v", name, sorted)
}

// TestFaultNetCut: the device's link is cut for 2 s (the call should carry on), for 30 s (the
// hub gives the device up; it rejoins) and while a join is in flight.
func TestFaultNetCut(t *testing.T) {
	nc := startNetCall(t)
	n := faultRepeats(t, 1)
	t.Run("2s", func(t *testing.T) { cutFault(t, nc, "network cut 2 s", 2*time.Second, n) })
	if os.Getenv("FAULTS_REPEAT") != "" { // 30 s each: only in make faults
		t.Run("30s", func(t *testing.T) { cutFault(t, nc, "network cut 30 s", 30*time.Second, n) })
	}
	t.Run("join", func(t *testing.T) { joinCutFault(t, nc, 2*time.Second, n) })
}

// joinCutFault: the agent leaves, then is told to join while its path to the hub (signalling
// and media; MQTT still passes) is cut for d: the join completes once the path is back.
func joinCutFault(t *testing.T, nc *netCall, d time.Duration, n int) {
	w := watchDevice(t, nc.broker.url(), nc.dev)
	defer w.c.Disconnect(0)
	_, hubPort, _ := strings.Cut(nc.hub.addr, ":")
	r := &faultReport{name: fmt.Sprintf("network cut %v during a join", d)}
	for i := range n {
		id := fmt.Sprintf("leave-%d", i)
		w.send(t, nc.dev, `{"id":"`+id+`","action":"leave"}`)
		w.reply(t, nc.dev, id, 10*time.Second)
		nc.lab.drop("-p", "udp", "-j", "DROP")
		nc.lab.drop("-p", "tcp", "-m", "multiport", "--ports", hubPort, "-j", "DROP")
		id = fmt.Sprintf("join-cut-%d", i)
		w.send(t, nc.dev, `{"id":"`+id+`","action":"join","channel":"`+faultChannel+`"}`)
		time.Sleep(d)
		nc.lab.undo()
		back := time.Now()
		rep := w.reply(t, nc.dev, id, 30*time.Second)
		if !rep.OK {
			t.Fatalf("%s: the join across the cut failed: %+v", id, rep)
		}
		at := nc.viewer.videoAfter(t, back, 30*time.Second)
		r.recover = append(r.recover, at.Sub(back))
		if i == 0 {
			r.first = nc.agent.settled()
		}
	}
	r.last = nc.agent.settled()
	r.check(t)
}

// TestFaultNetLoss: 5 % and 20 % of the packets through the router dropped at random (both
// directions) for a while: the call holds (no rejoin), and the figures say how the video
// fared (packets per second against before, the longest gap).
func TestFaultNetLoss(t *testing.T) {
	nc := startNetCall(t)
	hold := 5 * time.Second
	if os.Getenv("FAULTS_REPEAT") != "" {
		hold = 30 * time.Second
	}
	for _, p := range []string{"0.05", "0.20"} {
		t.Run(p, func(t *testing.T) {
			before := nc.agent.settled()
			n0 := nc.viewer.packetCount()
			time.Sleep(2 * time.Second)
			clean := float64(nc.viewer.packetCount()-n0) / 2
			nc.viewer.resetGap()
			n0 = nc.viewer.packetCount()
			nc.lab.drop("-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP")
			time.Sleep(hold)
			lossy := float64(nc.viewer.packetCount()-n0) / hold.Seconds()
			gap := nc.viewer.longestGap()
			nc.lab.undo()
			back := time.Now()
			at := nc.viewer.videoAfter(t, back, 10*time.Second)
			after := nc.agent.settled()
			t.Logf("FAULT loss %s%% for %v: video %.0f packets/s at the viewer (%.0f before), longest gap %v, "+
				"video after the loss %v; agent rejoins %d", strings.TrimPrefix(p, "0."), hold, lossy, clean,
				gap.Round(time.Millisecond), at.Sub(back).Round(time.Millisecond), after.Rejoins-before.Rejoins)
			if after.Rejoins != before.Rejoins {
				t.Errorf("the call rejoined under %s loss", p)
			}
		})
	}
}
