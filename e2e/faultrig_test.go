package e2e

// The fault matrix's rig (faults_test.go uses it): the hub and the agent as real processes
// (the camhub and camagent binaries, built once per test binary) that can be killed with
// SIGKILL or stopped with SIGTERM and started again on the same addresses, an in-process
// embedded broker that can be stopped and started again on its port, and a Go viewer that
// rejoins by itself and timestamps every video packet it receives from the device.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/internal/backoff"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

var (
	rigBinsOnce sync.Once
	rigBinsDir  string
	rigBinsErr  error
)

// rigBinaries builds camhub and camagent once (CGO_ENABLED=0, as shipped) and returns their
// directory; TestMain-free, so the directory is left in the system's temp dir of this run.
func rigBinaries(t *testing.T) (hubBin, agentBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds camhub and camagent and runs them through faults: not in -short")
	}
	rigBinsOnce.Do(func() {
		rigBinsDir, rigBinsErr = os.MkdirTemp("", "camagent-faults-")
		for _, p := range []string{"camhub", "camagent"} {
			if rigBinsErr != nil {
				return
			}
			cmd := exec.Command("go", "build", "-o", filepath.Join(rigBinsDir, p), "github.com/camagent/camagent/cmd/"+p)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				rigBinsErr = fmt.Errorf("build %s: %v\n%s", p, err, out)
			}
		}
	})
	if rigBinsErr != nil {
		t.Fatal(rigBinsErr)
	}
	return filepath.Join(rigBinsDir, "camhub"), filepath.Join(rigBinsDir, "camagent")
}

// proc is a child process whose output is kept for the test's log.
type proc struct {
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	exited chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	must(t, p.cmd.Start(), "start "+name)
	go func() { p.cmd.Wait(); close(p.exited) }()
	return p
}

// stop signals the process and waits for it to exit (SIGKILL after timeout); it returns how
// the process ended.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) (exitCode int, killed bool) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		killed = true
	}
	return p.cmd.ProcessState.ExitCode(), killed
}

// hubProc is camhub on a fixed loopback address, in demo mode, with an external broker.
type hubProc struct {
	t                      *testing.T
	bin, addr, mqtt, state string
	extra                  []string     // more camhub flags
	args                   []string     // if set, camhub's whole command line instead
	client                 *http.Client // for /healthz; nil: plain http
	scheme                 string       // "https" with client; default "http"
	p                      *proc
	allOutput              strings.Builder
}

func newHubProc(t *testing.T, bin, mqttURL string) *hubProc {
	h := &hubProc{t: t, bin: bin, addr: freeAddr(t), mqtt: mqttURL, state: filepath.Join(t.TempDir(), "hub")}
	t.Cleanup(func() {
		if h.p != nil {
			h.p.stop(syscall.SIGTERM, 10*time.Second)
			h.allOutput.WriteString(h.p.output())
		}
		if t.Failed() {
			t.Logf("camhub output:\n%s", h.allOutput.String())
		}
	})
	return h
}

func (h *hubProc) url() string {
	if h.scheme != "" {
		return h.scheme + "://" + h.addr
	}
	return "http://" + h.addr
}

// start runs camhub and returns once it answers /healthz (the moment a fault ends).
func (h *hubProc) start() time.Time {
	h.t.Helper()
	args := append([]string{"--listen", h.addr, "--mqtt", h.mqtt, "--state-dir", h.state,
		"--demo", "--log-level", "warn"}, h.extra...)
	if h.args != nil {
		args = h.args
	}
	h.p = startProc(h.t, "camhub", nil, h.bin, args...)
	client := h.client
	if client == nil {
		client = http.DefaultClient
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(h.url() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now()
			}
		}
		select {
		case <-h.p.exited:
			h.t.Fatalf("camhub exited at start:\n%s", h.p.output())
		default:
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("camhub not healthy on %s: %v\n%s", h.addr, err, h.p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends camhub with sig (SIGKILL: no goodbye to anyone; SIGTERM: a graceful shutdown).
func (h *hubProc) stop(sig syscall.Signal) {
	h.t.Helper()
	h.p.stop(sig, 10*time.Second)
	h.allOutput.WriteString(h.p.output())
	h.p = nil
}

// agentProc is camagent with synthetic devices (unless told otherwise) and a metrics endpoint.
type agentProc struct {
	t                                *testing.T
	bin, id, mqtt, hub, dir, metrics string
	camera, speaker                  string   // device SPECs; default test and a WAV file
	logLevel                         string   // default warn
	netns                            string   // run in this network namespace (ip netns exec)
	env                              []string // more environment
	p                                *proc
}

func newAgentProc(t *testing.T, bin, id, mqttURL, hubURL string) *agentProc {
	a := &agentProc{t: t, bin: bin, id: id, mqtt: mqttURL, hub: hubURL, dir: t.TempDir(), metrics: freeAddr(t)}
	t.Cleanup(func() {
		if a.p != nil {
			a.p.stop(syscall.SIGTERM, 15*time.Second)
		}
		if (t.Failed() || os.Getenv("FAULTS_LOG") != "") && a.p != nil {
			t.Logf("camagent output:\n%s", a.p.output())
		}
	})
	return a
}

func (a *agentProc) start() {
	a.t.Helper()
	level := a.logLevel
	if level == "" {
		level = cmp.Or(os.Getenv("FAULTS_AGENT_LOG_LEVEL"), "warn")
	}
	args := []string{"--id", a.id, "--mqtt", a.mqtt, "--hub", a.hub, "--camera", cmp.Or(a.camera, "test"), "--microphone", "test",
		"--speaker", cmp.Or(a.speaker, "wav:"+filepath.Join(a.dir, "speaker.wav")), "--state-dir", filepath.Join(a.dir, "state"),
		"--log-level", level}
	bin := a.bin
	if a.netns == "" {
		args = append(args, "--ice-loopback-only")
	} else {
		bin, args = "ip", append([]string{"netns", "exec", a.netns, a.bin}, args...)
	}
	env := append([]string{"CAMAGENT_METRICS_LISTEN=" + a.metrics, "CAMAGENT_METRICS_PPROF=true"}, a.env...)
	a.p = startProc(a.t, "camagent", env, bin, args...)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := a.sample(); err == nil {
			return
		}
		select {
		case <-a.p.exited:
			a.t.Fatalf("camagent exited at start:\n%s", a.p.output())
		default:
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("camagent metrics never answered:\n%s", a.p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procSample is what the agent says of itself on /metrics.
type procSample struct {
	Goroutines, FDs int
	RSS, Heap       float64 // bytes
	State           string
	Rejoins         int
	Queued          int // commands waiting behind the one running
}

func (s procSample) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, RSS %.1f MB, heap %.1f MB", s.Goroutines, s.FDs, s.RSS/1e6, s.Heap/1e6)
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

func (a *agentProc) sample() (procSample, error) {
	resp, err := noKeepAlive.Get("http://" + a.metrics + "/metrics") // in a netns: its address there
	if err != nil {
		return procSample{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return procSample{}, err
	}
	var s procSample
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		switch {
		case name == "go_goroutines":
			s.Goroutines = int(v)
		case name == "process_open_fds":
			s.FDs = int(v)
		case name == "process_resident_memory_bytes":
			s.RSS = v
		case name == "go_memstats_heap_inuse_bytes":
			s.Heap = v
		case name == "camagent_rejoins_total":
			s.Rejoins = int(v)
		case name == "camagent_commands_queued":
			s.Queued = int(v)
		case strings.HasPrefix(name, "camagent_state{") && v == 1:
			s.State = strings.TrimSuffix(strings.TrimPrefix(name, `camagent_state{state="`), `"}`)
		}
	}
	if s.Goroutines == 0 {
		return s, fmt.Errorf("no go_goroutines in the agent's metrics")
	}
	return s, nil
}

// settled samples the agent until goroutines and fds hold still for a second (pion ends some
// goroutines a moment after a close), or 8 s have passed; it returns the last sample.
func (a *agentProc) settled() procSample {
	a.t.Helper()
	var last procSample
	same := 0
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		s, err := a.sample()
		if err != nil {
			a.t.Fatalf("agent metrics: %v", err)
		}
		if s.Goroutines == last.Goroutines && s.FDs == last.FDs {
			if same++; same >= 4 {
				return s
			}
		} else {
			same = 0
		}
		last = s
	}
	return last
}

// heapProfile saves the agent's heap profile (after a forced GC) to path, and the same as
// text with the runtime's MemStats (heap idle and released, stacks) to path.txt.
func (a *agentProc) heapProfile(path string) {
	a.t.Helper()
	for _, f := range []struct{ query, path string }{{"gc=1", path}, {"gc=1&debug=1", path + ".txt"}} {
		resp, err := noKeepAlive.Get("http://" + a.metrics + "/debug/pprof/heap?" + f.query)
		if err != nil {
			a.t.Fatalf("heap profile: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			a.t.Fatalf("heap profile: %s: %v", resp.Status, err)
		}
		must(a.t, os.WriteFile(f.path, b, 0o644), "write heap profile")
	}
}

// waitState waits until the agent reports state st on /metrics.
func (a *agentProc) waitState(st string, timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := a.sample()
		if err == nil && s.State == st {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("agent not %s within %v (last %+v, %v)", st, timeout, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitQueued waits until the agent holds n commands queued behind the one running.
func (a *agentProc) waitQueued(n int, timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := a.sample()
		if err == nil && s.Queued == n {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("agent has not %d commands queued within %v (last %+v, %v)", n, timeout, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rigBroker is the hub's embedded broker (hub/broker), run here so it can be restarted on
// its port without the hub.
type rigBroker struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startRigBroker(t *testing.T, addr string) *rigBroker {
	t.Helper()
	b, err := broker.New(broker.Options{TCPAddr: addr, AllowAnonymous: true})
	must(t, err, "broker")
	ctx, cancel := context.WithCancel(context.Background())
	rb := &rigBroker{addr: addr, cancel: cancel, done: make(chan error, 1)}
	go func() { rb.done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-rb.done:
		t.Fatalf("broker: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not start")
	}
	rb.addr = b.Addr()
	return rb
}

func (b *rigBroker) url() string { return "tcp://" + b.addr }

func (b *rigBroker) stop(t *testing.T) {
	b.cancel()
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not stop")
	}
}

// rigViewer is a Go viewer of the device's video that rejoins whenever its connection ends
// (the hub died), like a viewer page that reconnects. With listen it hears the device's
// sound too, with tone it talks (a tone of that many Hz) to the device's speaker.
type rigViewer struct {
	api          *webrtc.API
	hub, channel string
	uid, device  uint32
	listen       bool
	tone         float64
	viewerClock  // its mu guards the fields below too
	packets      int
	maxGap       time.Duration // longest time between two video packets
	sessions     int
	audio        int       // audio packets received from the device (listen)
	lastAudio    time.Time // when the last one came
	maxAudioGap  time.Duration
	// token gets a subscriber token (default: a demo hub's loopback trust); tls for an
	// https:// hub.
	token func(ctx context.Context, channel string, uid uint32) (string, error)
	tls   *tls.Config
}

func (v *rigViewer) packetCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.packets
}

func (v *rigViewer) audioCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.audio
}

// resetGap starts measuring the longest gaps (video and audio) afresh.
func (v *rigViewer) resetGap() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.maxGap, v.maxAudioGap = 0, 0
}

func (v *rigViewer) sessionCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.sessions
}

// longestGap is the longest time between two video packets so far (or since the last
// packet, if that is longer).
func (v *rigViewer) longestGap() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return max(v.maxGap, time.Since(v.lastPacket))
}

// longestAudioGap is longestGap for the device's audio.
func (v *rigViewer) longestAudioGap() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return max(v.maxAudioGap, time.Since(v.lastAudio))
}

// run keeps the viewer in the channel until ctx ends.
func (v *rigViewer) run(ctx context.Context, t *testing.T) {
	bo := backoff.New(100*time.Millisecond, time.Second)
	for ctx.Err() == nil {
		err := v.session(ctx, t)
		v.mu.Lock()
		v.lastErr = err
		v.mu.Unlock()
		if _, err := bo.Wait(ctx, nil); err != nil {
			return
		}
	}
}

func (v *rigViewer) session(ctx context.Context, t *testing.T) error {
	ctx, cancel := context.WithCancel(ctx) // ends the tone with the session
	defer cancel()
	token := v.token
	if token == nil {
		token = func(ctx context.Context, channel string, uid uint32) (string, error) {
			return hubToken(ctx, http.DefaultClient, v.hub, "", channel, uid)
		}
	}
	tok, err := token(ctx, v.channel, v.uid)
	if err != nil {
		return err
	}
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: v.hub, API: v.api, TLS: v.tls, Logger: testLogger(t), RequestTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	// A client whose signalling died keeps its peer connections (ReadRTP would block on
	// them for ever): close it as soon as its connection ends or the viewer stops.
	unblock := context.AfterFunc(ctx, func() { c.Close() })
	defer unblock()
	go func() {
		<-c.Done() // ends at the latest with the deferred Close
		c.Close()
	}()
	res, err := c.Join(ctx, "demo", v.channel, v.uid, tok)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.sessions++
	v.mu.Unlock()
	if v.tone > 0 {
		if _, err := rtctest.PublishTone(ctx, c, v.tone); err != nil {
			return err
		}
	}
	kinds := []string{rtc.KindVideo}
	if v.listen {
		kinds = append(kinds, rtc.KindAudio)
	}
	published := map[string]bool{}
	for _, u := range res.Users {
		if u.UID == v.device {
			published[rtc.KindVideo], published[rtc.KindAudio] = u.Video, u.Audio
		}
	}
	// Follow the device: subscribe while it publishes, and again after it comes back (its
	// own connection died and it rejoined, while this viewer's lived on).
	reading := map[string]func(){} // kind → stop its reader
	defer func() {
		for _, stop := range reading {
			stop()
		}
	}()
	drop := func(kind string) {
		if stop := reading[kind]; stop != nil {
			stop()
			delete(reading, kind)
			_ = c.Unsubscribe(ctx, v.device, kind)
		}
	}
	for {
		for _, kind := range kinds {
			if published[kind] && reading[kind] == nil {
				track, err := c.Subscribe(ctx, v.device, kind)
				if err != nil {
					return err
				}
				reading[kind] = v.read(ctx, track, kind)
			}
		}
		select {
		case m, ok := <-c.Events():
			if !ok {
				return c.Err()
			}
			if m.UID == nil || *m.UID != v.device {
				continue
			}
			switch m.Event {
			case rtc.EventUserPublished:
				published[m.Kind] = true
				drop(m.Kind) // published anew without a goodbye: a new track
			case rtc.EventUserUnpublished:
				published[m.Kind] = false
				drop(m.Kind)
			case rtc.EventUserLeft:
				for _, kind := range kinds {
					published[kind] = false
					drop(kind)
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read timestamps the track's packets until the returned stop is called (it waits for the
// reader) or the track ends; of video it notes the packets that complete an IDR too.
func (v *rigViewer) read(ctx context.Context, track *webrtc.TrackRemote, kind string) (stop func()) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var depack codecs.H264Packet // Annex-B out, a fragmented NAL unit once whole
		for rctx.Err() == nil {
			until := time.Now().Add(200 * time.Millisecond)
			track.SetReadDeadline(until)
			pkt, _, err := track.ReadRTP()
			if err != nil {
				if wait := time.Until(until); wait > 0 { // not the deadline: the track ended
					time.Sleep(wait)
				}
				continue
			}
			now := time.Now()
			idr := false
			if kind == rtc.KindVideo {
				nal, err := depack.Unmarshal(pkt.Payload)
				idr = err == nil && h264.IsKeyframe(nal)
			}
			v.mu.Lock()
			switch {
			case kind == rtc.KindAudio:
				if !v.lastAudio.IsZero() {
					v.maxAudioGap = max(v.maxAudioGap, now.Sub(v.lastAudio))
				}
				v.audio++
				v.lastAudio = now
			default:
				if !v.lastPacket.IsZero() {
					v.maxGap = max(v.maxGap, now.Sub(v.lastPacket))
				}
				v.packets++
				v.lastPacket = now
				if idr {
					v.lastIDR = now
				}
			}
			v.mu.Unlock()
		}
	}()
	return func() { cancel(); <-done }
}

// viewerClock is what a test viewer knows of its video: when its last packet came (and
// its last IDR, if it looks), and why its last session ended.
type viewerClock struct {
	mu         sync.Mutex
	lastPacket time.Time
	lastIDR    time.Time
	lastErr    error
}

// videoAfter waits for a video packet that arrived after t0 and returns when it did.
func (v *viewerClock) videoAfter(t *testing.T, t0 time.Time, timeout time.Duration) time.Time {
	t.Helper()
	return v.after(t, "video", func() time.Time { return v.lastPacket }, t0, timeout)
}

// idrAfter waits for the end of an IDR that arrived after t0 and returns when it did.
func (v *viewerClock) idrAfter(t *testing.T, t0 time.Time, timeout time.Duration) time.Time {
	t.Helper()
	return v.after(t, "IDR", func() time.Time { return v.lastIDR }, t0, timeout)
}

// after waits until last() (read under mu) is after t0 and returns it.
func (v *viewerClock) after(t *testing.T, what string, last func() time.Time, t0 time.Time, timeout time.Duration) time.Time {
	t.Helper()
	return waitAfter(t, &v.mu, "at the viewer", what, last, func() error {
		if v.lastErr != nil {
			return fmt.Errorf("viewer's last error: %w", v.lastErr)
		}
		return nil
	}, t0, timeout)
}

// waitAfter polls last() (read under mu) until it is after t0 and returns it; on timeout
// the test fails with "no WHAT WHERE within …" and why() (also read under mu), if not nil.
func waitAfter(t *testing.T, mu *sync.Mutex, where, what string, last func() time.Time, why func() error, t0 time.Time, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		mu.Lock()
		at := last()
		var err error
		if why != nil {
			err = why()
		}
		mu.Unlock()
		if at.After(t0) {
			return at
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("no %s %s within %v (%v)", what, where, timeout, err)
			}
			t.Fatalf("no %s %s within %v", what, where, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hubToken asks the hub's token service for a publisher token: with key as a backend's
// bearer key, or without one from a demo hub (loopback trust).
func hubToken(ctx context.Context, client *http.Client, hub, key, channel string, uid uint32) (string, error) {
	return hubTokenAs(ctx, client, hub, key, channel, uid, "publisher")
}

// hubTokenAs is hubToken for a role ("publisher" or "subscriber").
func hubTokenAs(ctx context.Context, client *http.Client, hub, key, channel string, uid uint32, role string) (string, error) {
	body, _ := json.Marshal(map[string]any{"appId": "demo", "channel": channel, "uid": uid, "role": role, "expireSeconds": 3600})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hub+"/api/token", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Token == "" {
		return "", fmt.Errorf("token: %s: %v", resp.Status, err)
	}
	return r.Token, nil
}
