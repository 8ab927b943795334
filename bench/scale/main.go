// Command scale is the control plane at fleet size (make scale, docs/scaling.md "Brokers"),
// and one publisher's audience across relaying hubs (relay.go, "Relays"):
// it runs N simulated devices, each a real control.Client (the agent's MQTT code) with its
// own login, on the embedded broker, on a 3-node NATS cluster (nats-server processes on
// 127.0.0.1 with the trust model's users from hub/natsconf) and on Debian's mosquitto (with
// camhub's password and ACL files: mosquitto.go), sends each device one command
// from a hub-side client and reports the command round trips (p50/p95/p99), how many were
// answered, and how long the fleet took to connect; with -soak it then keeps commanding every
// device for that long (cmdsoak.go) and prints each minute's round trips. It prints figures and asserts nothing
// about speed; it exits non-zero only when a command got no reply.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/bench"
	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/hub/natsconf"
	"github.com/camagent/camagent/internal/freeport"
)

// result is one broker's figures.
type result struct {
	Broker     string      `json:"broker"`
	Devices    int         `json:"devices"`
	ConnectS   float64     `json:"connectSeconds"` // all devices connected and subscribed
	Answered   int         `json:"answered"`
	P50ms      float64     `json:"p50ms"`
	P95ms      float64     `json:"p95ms"`
	P99ms      float64     `json:"p99ms"`
	MaxMs      float64     `json:"maxMs"`
	BrokerRSSM float64     `json:"brokerRSSMB,omitempty"` // an external broker's resident memory (NATS: the 3 nodes summed)
	RSSName    string      `json:"-"`
	Soak       *soakResult `json:"soak,omitempty"` // -soak: commands held for a while
}

func main() {
	n := flag.Int("devices", 1000, "simulated devices")
	only := flag.String("only", "embedded,nats,mosquitto,relay,failover", "runs: brokers (embedded, nats, mosquitto), relay (hubs relaying one publisher to -viewers), failover (camhub processes, the channel's hub killed -kills times)")
	viewers := flag.Int("viewers", 30, "relay run: viewers of the one publisher")
	above := flag.Int("relay-above", 0, "relay run: cluster.relayAbove (0: a third of -viewers, so a third per hub)")
	kills := flag.Int("kills", 5, "failover run: how many times the channel's hub is killed")
	fviewers := flag.Int("failover-viewers", 3, "failover run: viewers, entering through the three hubs in turn")
	soak := flag.Duration("soak", 0, "broker runs: after the one command each, hold the fleet this long with a status command to every device every -every, round trips per minute (make soak)")
	every := flag.Duration("every", 5*time.Second, "-soak: the interval between two commands to a device")
	out := flag.String("out", "bench/results.json", "results file whose scale run the figures replace (\"\": none)")
	flag.Parse()
	start := time.Now()
	run := bench.NewScaleRun(".")
	failed := false
	for _, b := range strings.Split(*only, ",") {
		switch b {
		case "relay":
			a := *above
			if a <= 0 {
				a = max(1, *viewers/3)
			}
			r, err := runRelay(*viewers, a)
			if err != nil {
				fmt.Fprintf(os.Stderr, "scale relay: %v\n", err)
				failed = true
				continue
			}
			run.Figures = append(run.Figures, r.figures()...)
			failed = failed || r.complete != r.viewers
		case "failover":
			r, err := runFailover(*fviewers, *kills)
			if err != nil {
				fmt.Fprintf(os.Stderr, "scale failover: %v\n", err)
				failed = true
				continue
			}
			r.print()
			run.Figures = append(run.Figures, r.figures()...)
		default:
			r, err := runOne(b, *n, *soak, *every)
			if err != nil {
				fmt.Fprintf(os.Stderr, "scale %s: %v\n", b, err)
				failed = true
				continue
			}
			fmt.Printf("%-9s %5d devices: connected in %6.1f s; commands answered %d/%d; round trip p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms",
				r.Broker, r.Devices, r.ConnectS, r.Answered, r.Devices, r.P50ms, r.P95ms, r.P99ms, r.MaxMs)
			if r.BrokerRSSM > 0 {
				fmt.Printf("; %s %.1f MB", r.RSSName, r.BrokerRSSM)
			}
			fmt.Printf("; this process (the %d device clients%s) RSS %.0f MB; load %s\n", r.Devices, map[bool]string{true: " and the broker"}[b == "embedded"], rssMB([]int{os.Getpid()}), loadavg())
			if r.Soak != nil {
				r.Soak.print(r.Broker)
				failed = failed || r.Soak.Unanswered > 0
			}
			failed = failed || r.Answered != r.Devices
			run.Figures = append(run.Figures, r.figures()...)
		}
	}
	run.Seconds = time.Since(start).Seconds()
	if *out != "" {
		if err := bench.WriteScale(*out, run); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			failed = true
		}
	}
	fmt.Println()
	(&bench.Results{Revision: run.Revision, Date: run.Date, Machine: run.Machine, Figures: run.Figures}).PrintTable(os.Stdout)
	if *out != "" {
		fmt.Printf("\nwrote the scale run into %s in %.0f s\n", *out, run.Seconds)
	}
	if failed {
		os.Exit(1)
	}
}

// fleet is where the devices and the commander connect.
type fleet struct {
	urls     func(i int) string // broker list of device i
	hubURL   string
	user     func(id string) (string, string)
	hubLogin [2]string
	rss      func() float64
	rssName  string // what rss measures
}

func runOne(kind string, n int, soak, every time.Duration) (result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "camagent-scale-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("sim%04d", i)
	}
	var f fleet
	var wait func()
	switch kind {
	case "embedded":
		f, wait, err = embedded(ctx, ids)
	case "nats":
		f, wait, err = natsCluster(ctx, dir, ids)
	case "mosquitto":
		f, wait, err = mosquittoBroker(ctx, dir, ids)
	default:
		return result{}, fmt.Errorf("unknown broker %q", kind)
	}
	if err != nil {
		return result{}, err
	}
	defer func() { cancel(); wait() }()
	return drive(ctx, kind, f, ids, soak, every)
}

func embedded(ctx context.Context, ids []string) (fleet, func(), error) {
	b, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0", AllowAnonymous: true, Logger: slog.New(slog.DiscardHandler),
		MaxClients: 4 * len(ids), MaxPerAddress: 2 * len(ids)}) // every simulated device is on 127.0.0.1
	if err != nil {
		return fleet{}, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		return fleet{}, nil, err
	}
	u := "tcp://" + b.Addr()
	return fleet{urls: func(int) string { return u }, hubURL: u, user: func(string) (string, string) { return "", "" }},
		func() { <-done }, nil
}

// pass is the simulated credential of a user; a load tool's, not a secret.
func pass(user string) string { return "scale-" + user + "-credential" }

func natsCluster(ctx context.Context, dir string, ids []string) (fleet, func(), error) {
	hashes := map[string]string{}
	for _, u := range append([]string{"camhub"}, ids...) {
		h, err := natsconf.Hash(pass(u))
		if err != nil {
			return fleet{}, nil, err
		}
		hashes[u] = h
	}
	users, _, err := natsconf.Config(natsconf.Options{Prefix: control.DefaultPrefix, HubUsers: []string{"camhub"}, Devices: ids, Hashes: hashes})
	if err != nil {
		return fleet{}, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.conf"), []byte(users), 0o600); err != nil {
		return fleet{}, nil, err
	}
	ports := make([]int, 9) // client, route, MQTT for each node
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return fleet{}, nil, err
		}
	}
	var routes, mqtt []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1]))
		mqtt = append(mqtt, fmt.Sprintf("tcp://127.0.0.1:%d", ports[3*i+2]))
	}
	var wg sync.WaitGroup
	var pids []int
	for i := range 3 {
		conf := fmt.Sprintf("server_name: s%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\n"+
			"cluster { name: scale, listen: 127.0.0.1:%d, routes: [%s] }\nmqtt { listen: 127.0.0.1:%d }\ninclude ./users.conf\n",
			i, ports[3*i], filepath.Join(dir, fmt.Sprint("js", i)), ports[3*i+1], strings.Join(routes, ", "), ports[3*i+2])
		path := filepath.Join(dir, fmt.Sprintf("s%d.conf", i))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return fleet{}, nil, err
		}
		cmd := exec.CommandContext(ctx, "/usr/sbin/nats-server", "-c", path)
		if err := cmd.Start(); err != nil {
			return fleet{}, nil, fmt.Errorf("nats-server: %w", err)
		}
		pids = append(pids, cmd.Process.Pid)
		wg.Add(1)
		go func() { defer wg.Done(); cmd.Wait() }()
	}
	for _, u := range mqtt {
		if err := waitListen(strings.TrimPrefix(u, "tcp://"), 10*time.Second); err != nil {
			return fleet{}, wg.Wait, err
		}
	}
	return fleet{
		// Device i tries "its" node first and the other two after it.
		urls: func(i int) string {
			k := i % 3
			return strings.Join(append(slices.Clone(mqtt[k:]), mqtt[:k]...), ",")
		},
		hubURL:   strings.Join(mqtt, ","),
		user:     func(id string) (string, string) { return id, pass(id) },
		hubLogin: [2]string{"camhub", pass("camhub")},
		rss:      func() float64 { return rssMB(pids) },
		rssName:  "NATS RSS (3 nodes)",
	}, wg.Wait, nil
}

func drive(ctx context.Context, kind string, f fleet, ids []string, soak, every time.Duration) (result, error) {
	r := result{Broker: kind, Devices: len(ids)}
	handler := func(context.Context, control.Command) (control.State, error) {
		return control.State{State: control.StateIdle}, nil
	}
	start := time.Now()
	var wg sync.WaitGroup
	defer wg.Wait() // after the cancel below: every device says offline and returns
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan error, len(ids))
	sem := make(chan struct{}, 50) // connections being set up at once
	for i, id := range ids {
		u, p := f.user(id)
		c, err := control.New(control.Options{URL: f.urls(i), ID: id, Username: u, Password: p, Handler: handler})
		if err != nil {
			return r, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			select {
			case <-c.Ready():
				ready <- nil
			case <-time.After(5 * time.Minute):
				ready <- fmt.Errorf("%s not connected after 5 min", id)
			}
		}()
	}
	for range ids {
		if err := <-ready; err != nil {
			return r, err
		}
	}
	r.ConnectS = time.Since(start).Seconds()

	cm, err := newCommander(f)
	if err != nil {
		return r, err
	}
	defer cm.close()
	for _, id := range ids {
		cm.send(id, "scale-"+id)
	}
	for deadline := time.Now().Add(60 * time.Second); cm.waiting() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	rtts := cm.take()
	r.Answered = len(rtts)
	r = r.withRTT(rtts, f)
	if soak > 0 {
		s, err := commandSoak(ctx, kind, cm, f, ids, soak, every)
		r.Soak = &s
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

func (r result) withRTT(rtts []time.Duration, f fleet) result {
	r.P50ms, r.P95ms, r.P99ms, r.MaxMs = percentile(rtts, 0.50), percentile(rtts, 0.95), percentile(rtts, 0.99), percentile(rtts, 1)
	if f.rss != nil {
		r.BrokerRSSM, r.RSSName = f.rss(), f.rssName
	}
	return r
}

func freePort() (int, error) { return freeport.Port() }

func waitListen(addr string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s not listening after %v: %w", addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssMB sums VmRSS of the processes.
func rssMB(pids []int) float64 {
	var kb float64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var n float64
				fmt.Sscanf(strings.TrimSpace(v), "%f", &n)
				kb += n
			}
		}
	}
	return kb / 1024
}
