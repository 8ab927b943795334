package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/camagent/camagent/internal/freeport"
)

// hubProc is the camhub process under soak, so that its memory, goroutines and CPU are its
// own.
type hubProc struct {
	url, metrics string
	cmd          *exec.Cmd
	exited       chan struct{}
	log          string
}

// startHub builds camhub from this checkout and runs it in demo mode on loopback against the
// broker at mqtt, with room for every soak client's signalling socket from 127.0.0.1.
func startHub(ctx context.Context, dir, mqtt, cert string, sockets int) (*hubProc, error) {
	bin := filepath.Join(dir, "camhub")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/camhub").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/camhub: %v\n%s", err, out)
	}
	listen, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	metrics, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "camhub.yaml")
	yaml := fmt.Sprintf("apps:\n  - id: demo\n    certificate: %s\nmaxConnectionsPerAddress: %d\nmetricsListen: %s\n", cert, sockets, metrics)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	h := &hubProc{url: "http://" + listen, metrics: "http://" + metrics + "/metrics", exited: make(chan struct{}),
		log: filepath.Join(dir, "camhub.log")}
	out, err := os.Create(h.log)
	if err != nil {
		return nil, err
	}
	h.cmd = exec.CommandContext(ctx, bin, "--config", conf, "--demo", "--listen", listen, "--mqtt", mqtt,
		"--state-dir", filepath.Join(dir, "hub"), "--log-level", "warn")
	h.cmd.Env = append(os.Environ(), "CAMHUB_ICE_LOOPBACK_ONLY=true")
	h.cmd.Stdout, h.cmd.Stderr = out, out
	if err := h.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start camhub: %w", err)
	}
	go func() { h.cmd.Wait(); out.Close(); close(h.exited) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(h.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h, nil
			}
		}
		select {
		case <-h.exited:
			return nil, fmt.Errorf("camhub exited at start:\n%s", h.tail())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("camhub not healthy in 30 s:\n%s", h.tail())
		}
	}
}

func (h *hubProc) tail() string {
	b, _ := os.ReadFile(h.log)
	return string(b[max(0, len(b)-3000):])
}

// stop ends camhub with SIGTERM and waits for it.
func (h *hubProc) stop() {
	h.cmd.Process.Signal(os.Interrupt)
	select {
	case <-h.exited:
	case <-time.After(15 * time.Second):
		h.cmd.Process.Kill()
		<-h.exited
	}
}

// sample is the hub's state at one moment.
type sample struct {
	at         time.Time
	rssMB      float64
	cpuTicks   int64 // utime + stime, in clock ticks
	goroutines int
	users      int
	load       string
	// this process's (the agents' and viewers'), for context
	selfRSSMB float64
	selfTicks int64
	udpDrops  int64 // the machine's UDP datagrams dropped on full receive buffers, so far
}

// clockTick is the kernel's USER_HZ, 100 on every Linux we run on.
const clockTick = 100

func (h *hubProc) sample() (sample, error) {
	s := sample{at: time.Now(), load: loadavg()}
	var err error
	if s.rssMB, s.cpuTicks, err = procUsage(h.cmd.Process.Pid); err != nil {
		return s, fmt.Errorf("the hub's usage: %w", err)
	}
	s.selfRSSMB, s.selfTicks, _ = procUsage(os.Getpid())
	s.udpDrops = udpRcvbufErrors()
	resp, err := http.Get(h.metrics)
	if err != nil {
		return s, fmt.Errorf("read the hub's metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "camhub_goroutines":
			s.goroutines, _ = strconv.Atoi(v)
		case "camhub_users":
			s.users, _ = strconv.Atoi(v)
		}
	}
	return s, sc.Err()
}

// procUsage reads a process's resident memory (MB) and CPU time (utime + stime, in ticks).
func procUsage(pid int) (rssMB float64, ticks int64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			rssMB = kb / 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command name (which may hold spaces) start after its ")"; utime
	// and stime, fields 14 and 15 of the line, are the 12th and 13th of those.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return rssMB, u + k, nil
}

// udpRcvbufErrors is RcvbufErrors of /proc/net/snmp: UDP datagrams the kernel dropped
// because a socket's receive buffer was full (every process of this network namespace).
func udpRcvbufErrors() int64 {
	b, _ := os.ReadFile("/proc/net/snmp")
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		for i, v := range strings.Fields(rest) {
			if i < len(names) && names[i] == "RcvbufErrors" {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
	}
	return 0
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
