// failover.go: make scale's failover run (docs/scaling.md, "Failure behaviour"): three camhub
// processes in demo mode share a redis-server and an MQTT broker (the embedded one, in this
// process); a camagent process with the synthetic camera and microphone enters through hub1
// (the other two its failover entry points: hubFailover) and Go viewers enter through hub2, hub3 and hub1 in turn, each with the three hubs as its
// entry points, as an app with several addresses would. It measures what a redirect costs a
// join (straight at the channel's hub against through another), then kills the hub that
// holds the channel with SIGKILL, again and again (the killed hub is started again each time,
// so three hubs stay), and reports for each kill how long until every viewer has video again
// on a new session. It prints figures and asserts nothing about speed; it fails only when the
// call does not come back at all (30 s).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/bench"
	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/hub/cluster"
	"github.com/camagent/camagent/hub/cluster/clustertest"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/internal/freeport"
	"github.com/camagent/camagent/rtc"
)

const (
	failoverCert    = "scale-failover-certificate-0123456789"
	failoverChannel = "failover"
	failoverDevice  = "scale-cam"
	failoverLease   = 3 * time.Second // the hubs' default cluster.lease
)

// failoverResult is the run's figures.
type failoverResult struct {
	Viewers    int
	Kills      int
	Recovery   []time.Duration // per kill: until the last viewer had video again
	PerViewer  []time.Duration // every viewer of every kill
	Direct     []time.Duration // dial + join reply at the channel's hub
	Redirected []time.Duration // the same through another hub (one redirect)
	Load       string
}

// process is one child (camhub or camagent) with its output in a file.
type process struct {
	name, bin, log string
	args, env      []string
	cmd            *exec.Cmd
	exited         chan struct{}
}

func (p *process) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); f.Close(); close(p.exited) }()
	return nil
}

// stop signals the process and waits for it (SIGKILL after 10 s).
func (p *process) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail is the end of the process's output, for an error message.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	return string(b[max(0, len(b)-2000):])
}

// waitHealthy waits for url's /healthz to answer 200.
func waitHealthy(url string, p *process, d time.Duration) error {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited at start:\n%s", p.name, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v:\n%s", p.name, d, p.tail())
		}
	}
}

// buildBinaries builds camhub and camagent from this checkout into dir.
func buildBinaries(dir string) (hubBin, agentBin string, err error) {
	hubBin, agentBin = filepath.Join(dir, "camhub"), filepath.Join(dir, "camagent")
	for bin, pkg := range map[string]string{hubBin: "./cmd/camhub", agentBin: "./cmd/camagent"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return hubBin, agentBin, nil
}

func runFailover(viewers, kills int) (failoverResult, error) {
	res := failoverResult{Viewers: viewers, Kills: kills}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "camagent-scale-failover-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	hubBin, agentBin, err := buildBinaries(dir)
	if err != nil {
		return res, err
	}
	redis, stopRedis, err := clustertest.Start(dir, "")
	if err != nil {
		return res, err
	}
	defer stopRedis()
	mqttAddr, err := freeport.Addr()
	if err != nil {
		return res, err
	}
	b, err := broker.New(broker.Options{TCPAddr: mqttAddr, AllowAnonymous: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, err
	}
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- b.Run(ctx) }()
	defer func() { cancel(); <-brokerDone }()
	select {
	case <-b.Ready():
	case err := <-brokerDone:
		return res, fmt.Errorf("broker: %w", err)
	}
	conf := filepath.Join(dir, "camhub.yaml")
	if err := os.WriteFile(conf, []byte("apps:\n  - id: demo\n    certificate: "+failoverCert+"\n"), 0o600); err != nil {
		return res, err
	}

	hubs := make([]*process, 3)
	urls := make([]string, 3)
	for i := range hubs {
		addr, err := freeport.Addr()
		if err != nil {
			return res, err
		}
		id := fmt.Sprintf("hub%d", i+1)
		urls[i] = "http://" + addr
		hubs[i] = &process{name: "camhub " + id, bin: hubBin, log: filepath.Join(dir, id+".log"),
			args: []string{"--config", conf, "--demo", "--listen", addr, "--mqtt", "tcp://" + mqttAddr,
				"--state-dir", filepath.Join(dir, id), "--log-level", "warn"},
			env: []string{"CAMHUB_CLUSTER_REDIS=" + redis, "CAMHUB_CLUSTER_HUB_ID=" + id, "CAMHUB_CLUSTER_PUBLIC_URL=" + urls[i],
				"CAMHUB_ICE_LOOPBACK_ONLY=true"}}
		if err := hubs[i].start(); err != nil {
			return res, err
		}
		defer hubs[i].stop(syscall.SIGTERM)
		if err := waitHealthy(urls[i], hubs[i], 20*time.Second); err != nil {
			return res, err
		}
	}
	byURL := map[string]int{}
	for i, u := range urls {
		byURL[rtc.HubWebSocketURL(u)] = i
	}
	probe, err := cluster.New(cluster.Options{Redis: redis, HubID: "scale-probe", PublicURL: "http://127.0.0.1:1"})
	if err != nil {
		return res, err
	}
	owner := func() int {
		o, err := probe.Owner(ctx, "demo", failoverChannel)
		if err != nil || !strings.HasPrefix(o, "hub") {
			return -1
		}
		var n int
		fmt.Sscanf(o, "hub%d", &n)
		return n - 1
	}

	ag := &process{name: "camagent", bin: agentBin, log: filepath.Join(dir, "camagent.log"),
		args: []string{"--id", failoverDevice, "--mqtt", "tcp://" + mqttAddr, "--hub", urls[0], "--camera", "test",
			"--microphone", "test", "--speaker", "wav:" + filepath.Join(dir, "speaker.wav"), "--state-dir", filepath.Join(dir, "agent"),
			"--log-level", "warn", "--ice-loopback-only"},
		// Its entry points are the three hubs, hub1 first: when hub1 is the one killed, the
		// device rejoins through the next (docs/scaling.md, "Running on several machines").
		env: []string{"CAMAGENT_HUBS=" + urls[1] + "," + urls[2], "CAMAGENT_HUB_FAILOVER=true"}}
	if err := ag.start(); err != nil {
		return res, err
	}
	defer ag.stop(syscall.SIGTERM)

	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		return res, err
	}
	device := (&agent.Config{ID: failoverDevice}).DefaultUID()
	vs := make([]*failoverViewer, viewers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range vs {
		// Viewer i enters through hub (i+1) mod 3 first: the first, through hub2, places the channel.
		var entries []string
		for k := range urls {
			entries = append(entries, urls[(i+1+k)%len(urls)])
		}
		vs[i] = &failoverViewer{api: api, entries: entries, uid: uint32(5000 + i), device: device}
		wg.Add(1)
		go func() { defer wg.Done(); vs[i].run(ctx) }()
		if i == 0 {
			for deadline := time.Now().Add(20 * time.Second); vs[0].hub() == ""; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					return res, fmt.Errorf("the first viewer never joined: %v", vs[0].err())
				}
			}
		}
	}
	if err := bench.PostCommand(urls[2], failoverDevice, `{"action":"join","channel":"`+failoverChannel+`"}`, 20*time.Second, 200*time.Millisecond); err != nil {
		return res, fmt.Errorf("join command: %w (agent:\n%s)", err, ag.tail())
	}
	start := time.Now()
	for _, v := range vs {
		if _, err := v.videoAfter(start.Add(-time.Hour), 30*time.Second); err != nil {
			return res, fmt.Errorf("before any kill: %w (agent:\n%s)", err, ag.tail())
		}
	}

	holder := owner()
	if holder < 0 {
		return res, fmt.Errorf("no hub holds the channel")
	}
	other := (holder + 1) % len(urls)
	res.Direct, err = failoverJoins(ctx, api, urls[holder], 30)
	if err != nil {
		return res, err
	}
	if res.Redirected, err = failoverJoins(ctx, api, urls[other], 30); err != nil {
		return res, err
	}

	for k := range kills {
		holder := owner()
		if holder < 0 {
			return res, fmt.Errorf("kill %d: no hub holds the channel", k+1)
		}
		killedAt := time.Now()
		hubs[holder].stop(syscall.SIGKILL)
		var worst time.Duration
		for _, v := range vs {
			at, err := v.videoAfter(killedAt, 30*time.Second)
			if err != nil {
				return res, fmt.Errorf("kill %d of hub%d: %w (agent:\n%s)", k+1, holder+1, err, ag.tail())
			}
			d := at.Sub(killedAt)
			res.PerViewer = append(res.PerViewer, d)
			worst = max(worst, d)
		}
		res.Recovery = append(res.Recovery, worst)
		fmt.Printf("failover  kill %d of %d: hub%d (the channel's) killed; every viewer's video again after %v, now on hub%d\n",
			k+1, kills, holder+1, worst.Round(time.Millisecond), owner()+1)
		// The killed hub comes back (its lease has run out by now) so that three hubs stay.
		if err := hubs[holder].start(); err != nil {
			return res, err
		}
		if err := waitHealthy(urls[holder], hubs[holder], 20*time.Second); err != nil {
			return res, err
		}
		time.Sleep(failoverLease) // the others read its registration; the call settles
	}
	load, _ := os.ReadFile("/proc/loadavg")
	res.Load = strings.Join(strings.Fields(string(load))[:3], " ")
	return res, nil
}

// failoverToken mints a token for uid in the channel (the hubs' shared App certificate).
func failoverToken(uid uint32, privs ...string) (string, error) {
	tok, _, err := token.MintPrivileges("demo", failoverCert, failoverChannel, uid,
		append(privs, token.PrivJoin, token.PrivSubscribe), time.Hour, time.Now())
	return tok, err
}

// failoverJoins times n joins (dial, join reply, close) entering through hubURL.
func failoverJoins(ctx context.Context, api *webrtc.API, hubURL string, n int) ([]time.Duration, error) {
	var d []time.Duration
	for i := range n {
		tok, err := failoverToken(uint32(9000 + i))
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		c, _, err := rtc.DialJoin(ctx, rtc.ClientOptions{URL: hubURL, API: api, Logger: slog.New(slog.DiscardHandler)},
			"demo", failoverChannel, uint32(9000+i), tok)
		if err != nil {
			return nil, fmt.Errorf("join through %s: %w", hubURL, err)
		}
		d = append(d, time.Since(t0))
		c.Close()
	}
	return d, nil
}

// print prints the failover run's figures.
func (r failoverResult) print() {
	each := rounded(r.Recovery) // in kill order: pct sorts
	fmt.Printf("failover  %d kill -9 of the channel's hub (lease %v), %d viewers: every viewer's video again after p50 %v, p95 %v, max %v (each kill: %v); "+
		"join (dial + join reply) at the channel's hub p50 %v p95 %v, through another hub (one redirect) p50 %v p95 %v; load %s\n",
		r.Kills, failoverLease, r.Viewers, pct(r.Recovery, 50).Round(time.Millisecond), pct(r.Recovery, 95).Round(time.Millisecond),
		pct(r.Recovery, 100).Round(time.Millisecond), each,
		pct(r.Direct, 50), pct(r.Direct, 95), pct(r.Redirected, 50), pct(r.Redirected, 95), r.Load)
}

func rounded(d []time.Duration) []time.Duration {
	out := slices.Clone(d)
	for i := range out {
		out[i] = out[i].Round(time.Millisecond)
	}
	return out
}
