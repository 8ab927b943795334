package e2e

// The fault matrix (docs/reliability.md): a real call — camagent with synthetic devices,
// camhub, a Go viewer — taken through each fault again and again. After every repetition
// the viewer must see the device's video again; after the last, the agent's goroutines and
// file descriptors must be back to their count after the first (a call that forgets to
// close its old connection to the hub grows by two peer connections per fault). Each
// command is answered exactly once, and SIGTERM in every call state ends the agent cleanly.
//
// `make test` runs a few repetitions of each; `make faults` (FAULTS_REPEAT=20) the full run.

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/rtc"
)

// faultRepeats is how often each fault is repeated: FAULTS_REPEAT, else short.
func faultRepeats(t *testing.T, short int) int {
	if s := os.Getenv("FAULTS_REPEAT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FAULTS_REPEAT=%q: want a positive number", s)
		}
		return n
	}
	if testing.Short() {
		t.Skip("the fault matrix (seconds to minutes of restarts): not in -short")
	}
	return short
}

// Leak tolerance between the sample after the first repetition and the one after the last.
// Goroutines: 2, for what is legitimately in flight at a given moment in a healthy call
// (a stats report's RTCP read, a pion timer goroutine between two ticks); a leaked
// connection costs dozens. File descriptors: none.
const (
	leakGoroutines = 2
	leakFDs        = 0
)

// faultCall is a call in progress through the rig: hub and agent processes, a broker, a
// viewer that rejoins by itself.
type faultCall struct {
	hub    *hubProc
	agent  *agentProc
	viewer *rigViewer
	broker string
	dev    string
	devUID uint32
	// viewerOpts, if set, completes the viewer before it starts; with it the viewer's ICE is
	// not limited to loopback (the call crosses network namespaces).
	viewerOpts func(*rigViewer)
	// agentOpts, if set, completes the agent before it starts (its devices, environment).
	agentOpts func(*agentProc)
	// viewerTone, if set, makes the viewer listen to the device and talk to it: a tone of
	// this many Hz.
	viewerTone float64
}

const faultChannel = "faults"

func startFaultCall(t *testing.T, brokerURL string) *faultCall {
	t.Helper()
	return (&faultCall{broker: brokerURL, dev: "e2e-faults"}).start(t)
}

// start runs the hub and the agent of fc (broker, dev and the options set) and joins.
func (fc *faultCall) start(t *testing.T) *faultCall {
	t.Helper()
	hubBin, agentBin := rigBinaries(t)
	fc.hub = newHubProc(t, hubBin, fc.broker)
	fc.hub.start()
	fc.agent = newAgentProc(t, agentBin, fc.dev, fc.broker, fc.hub.url())
	if fc.agentOpts != nil {
		fc.agentOpts(fc.agent)
	}
	fc.agent.start()
	fc.join(t)
	return fc
}

// join has the agent join faultChannel and starts the viewer, returning once the viewer
// sees the device's video.
func (fc *faultCall) join(t *testing.T) {
	t.Helper()
	w := watchDevice(t, fc.broker, fc.dev)
	defer w.c.Disconnect(0)
	w.send(t, fc.dev, `{"id":"join-1","action":"join","channel":"`+faultChannel+`"}`)
	r := w.reply(t, fc.dev, "join-1", 30*time.Second)
	if !r.OK || r.State == nil || r.State.State != control.StateJoined {
		t.Fatalf("join reply %+v", r)
	}
	fc.devUID = r.State.UID
	fc.viewer = startRigViewer(t, fc.hub.url(), fc.devUID, fc.viewerOpts == nil, func(v *rigViewer) {
		v.listen, v.tone = fc.viewerTone > 0, fc.viewerTone
		if fc.viewerOpts != nil {
			fc.viewerOpts(v)
		}
	})
	fc.viewer.videoAfter(t, time.Now(), 20*time.Second)
}

// startRigViewer runs a viewer of device's video on hub until the test ends; opts
// completes it. loopback limits its ICE to loopback addresses.
func startRigViewer(t *testing.T, hub string, device uint32, loopback bool, opts func(*rigViewer)) *rigViewer {
	t.Helper()
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: loopback})
	must(t, err, "api")
	v := &rigViewer{api: api, hub: hub, channel: faultChannel, uid: 7001, device: device}
	opts(v)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); v.run(ctx, t) }()
	t.Cleanup(func() { cancel(); <-done })
	return v
}

// faultReport collects one fault's figures.
type faultReport struct {
	name        string
	again       string          // what recovery is, e.g. "video again" (the default)
	recover     []time.Duration // end of the fault → recovered (video again at the viewer)
	first, last procSample
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func (r *faultReport) check(t *testing.T) {
	t.Helper()
	t.Logf("FAULT %s: %d repetitions; %s p50 %v p95 %v max %v", r.name, len(r.recover), cmp.Or(r.again, "video again"),
		pct(r.recover, .5).Round(time.Millisecond), pct(r.recover, .95).Round(time.Millisecond),
		pct(r.recover, 1).Round(time.Millisecond))
	t.Logf("FAULT %s: agent after the first: %v", r.name, r.first)
	t.Logf("FAULT %s: agent after the last:  %v (RSS %+.2f MB, heap %+.2f MB)", r.name, r.last,
		(r.last.RSS-r.first.RSS)/1e6, (r.last.Heap-r.first.Heap)/1e6)
	if d := r.last.Goroutines - r.first.Goroutines; d > leakGoroutines {
		t.Errorf("%s: goroutines grew by %d over %d repetitions (%d → %d)", r.name, d, len(r.recover)-1, r.first.Goroutines, r.last.Goroutines)
	}
	if d := r.last.FDs - r.first.FDs; d > leakFDs {
		t.Errorf("%s: file descriptors grew by %d over %d repetitions (%d → %d)", r.name, d, len(r.recover)-1, r.first.FDs, r.last.FDs)
	}
}

// hubFault takes the call through n hub deaths by sig, each followed by a restart on the
// same address: the agent rejoins by itself, the viewer sees its video again.
func hubFault(t *testing.T, name string, sig syscall.Signal, n int) {
	b := startRigBroker(t, "127.0.0.1:0")
	t.Cleanup(func() { b.stop(t) })
	fc := startFaultCall(t, b.url())
	r := repeatFault(t, fc, name, n, 20*time.Second, func() time.Time {
		fc.hub.stop(sig)
		time.Sleep(200 * time.Millisecond) // the agent and the viewer notice the loss
		return fc.hub.start()
	})
	if s := r.last; s.Rejoins < n {
		t.Errorf("agent counted %d rejoins after %d hub restarts", s.Rejoins, n)
	}
	r.check(t)
}

// repeatFault runs fault n times on the call; fault returns when the fault ended. After
// each, the viewer must see video again within timeout and the agent be joined; the report
// has the recovery times and the agent's figures after the first and the last repetition.
func repeatFault(t *testing.T, fc *faultCall, name string, n int, timeout time.Duration, fault func() time.Time) *faultReport {
	t.Helper()
	return repeatFaultUntil(t, fc, name, "video again", n, timeout, fault, func(back time.Time) time.Time {
		return fc.viewer.videoAfter(t, back, timeout)
	})
}

// repeatFaultUntil is repeatFault with another measure of recovery: recovered waits (within
// timeout) for it after the fault ended at back and returns when it came; again names it.
func repeatFaultUntil(t *testing.T, fc *faultCall, name, again string, n int, timeout time.Duration,
	fault func() time.Time, recovered func(back time.Time) time.Time) *faultReport {
	t.Helper()
	r := &faultReport{name: name, again: again}
	// FAULTS_HEAP_DIR: the agent's heap profiles after the first and the last repetition,
	// for go tool pprof -diff_base (docs/reliability.md).
	heapDir := os.Getenv("FAULTS_HEAP_DIR")
	profile := func(which string) {
		if heapDir != "" {
			p := filepath.Join(heapDir, strings.NewReplacer(" ", "-", "/", "-").Replace(name)+"-"+which+".pb.gz")
			fc.agent.heapProfile(p)
			s, err := fc.agent.sample()
			must(t, err, "agent metrics")
			t.Logf("FAULT %s: heap profile %s; after its forced GC: %v", name, p, s)
		}
	}
	for i := range n {
		back := fault()
		at := recovered(back)
		r.recover = append(r.recover, at.Sub(back))
		fc.agent.waitState(control.StateJoined, timeout)
		if i == 0 {
			r.first = fc.agent.settled()
			profile("first")
		}
	}
	r.last = fc.agent.settled()
	profile("last")
	return r
}

// TestFaultHubKill: camhub is killed with SIGKILL mid-call and started again, 5 times (more
// with FAULTS_REPEAT). This is the test for the rejoin leak of issue 12.
func TestFaultHubKill(t *testing.T) {
	hubFault(t, "hub kill -9", syscall.SIGKILL, faultRepeats(t, 5))
}

// TestFaultHubRestart: camhub shuts down gracefully (SIGTERM) mid-call and starts again.
func TestFaultHubRestart(t *testing.T) {
	hubFault(t, "hub SIGTERM", syscall.SIGTERM, faultRepeats(t, 2))
}
