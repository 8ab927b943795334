package e2e

// Several hubs as one service (docs/scaling.md) on a NATS cluster as the broker
// (docs/nats.md): three camhub processes sharing a channel directory in a real
// redis-server, and a 3-node nats-server cluster whose authorization block `camhub nats
// users` writes (the device's own login, the hubs' account), in the default (secure) mode
// with an enrolled device and a scoped key. Every hub and the agent get the three nodes'
// URLs, each hub in another order. Viewers enter through hub2 and hub3 and the device
// through hub1: the channel ends on one hub. That hub is killed with SIGKILL: the device and
// the viewers come back by themselves through their entry points and the call resumes on
// another hub (video at the viewers, the viewer's voice at the device's speaker) within the
// issue's 5 s. Then the NATS node the agent is connected to is killed: commands sent
// through the hubs are each answered exactly once.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/cluster"
	"github.com/camagent/camagent/hub/cluster/clustertest"
	"github.com/camagent/camagent/hub/natsconf/natstest"
	"github.com/camagent/camagent/internal/backoff"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/webrtc/v4"
)

const (
	clusterChannel = "cluster"
	clusterTalkHz  = 600.0
)

// clusterHub is one camhub process of the cluster.
type clusterHub struct {
	id, addr string
	p        *proc
}

func (h *clusterHub) url() string { return "http://" + h.addr }

func startClusterHub(t *testing.T, bin, id string, env []string, args ...string) *clusterHub {
	t.Helper()
	h := &clusterHub{id: id, addr: freeAddr(t)}
	env = append(env, "CAMHUB_CLUSTER_HUB_ID="+id, "CAMHUB_CLUSTER_PUBLIC_URL="+h.url())
	h.p = startProc(t, "camhub "+id, env, bin, append([]string{"--listen", h.addr, "--log-level", "info"}, args...)...)
	t.Cleanup(func() {
		h.p.stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() || os.Getenv("FAULTS_LOG") != "" {
			t.Logf("%s output:\n%s", id, h.p.output())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(h.url() + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case <-h.p.exited:
			t.Fatalf("%s exited at start:\n%s", id, h.p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy:\n%s", id, h.p.output())
		}
	}
}

// users reads camhub_users from the hub's /metrics (with a key allowed metrics).
func (h *clusterHub) users(t *testing.T, key string) int {
	req, _ := http.NewRequest(http.MethodGet, h.url()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "camhub_users "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("%s: no camhub_users in /metrics (%s)", h.id, resp.Status)
	return -1
}

// clusterViewer watches the device and talks to it (a tone) through any hub: each session
// enters through the next of its entry points (the one it used may be dead) and follows
// the hub's redirects, as an app with several hub addresses would.
type clusterViewer struct {
	api            *webrtc.API
	entries        []string
	key            string
	uid, device    uint32
	talk           bool      // publishes a tone (its voice)
	viewerClock              // faultrig_test.go; its mu guards the fields below too
	joinedAt       string    // the hub the current session joined (its signalling URL)
	fresh          time.Time // the current session's first video packet
	sessions, next int
}

// videoOnNewSession waits for the first video packet of a session begun after t0 (packets
// of the session before, still in flight or in buffers, do not count) and returns when it came.
func (v *clusterViewer) videoOnNewSession(t *testing.T, t0 time.Time, timeout time.Duration) time.Time {
	t.Helper()
	return v.after(t, "video on a new session", func() time.Time { return v.fresh }, t0, timeout)
}

func (v *clusterViewer) run(ctx context.Context, t *testing.T) {
	bo := backoff.New(100*time.Millisecond, 500*time.Millisecond)
	for ctx.Err() == nil {
		err := v.session(ctx, t)
		v.mu.Lock()
		v.lastErr, v.joinedAt = err, ""
		v.mu.Unlock()
		if _, err := bo.Wait(ctx, nil); err != nil {
			return
		}
	}
}

func (v *clusterViewer) session(ctx context.Context, t *testing.T) error {
	entry := v.entries[v.next%len(v.entries)]
	v.next++
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	tok, err := hubToken(tctx, http.DefaultClient, entry, v.key, clusterChannel, v.uid)
	if err != nil {
		// A dead entry point: the next session tries the next one.
		return err
	}
	c, _, err := rtc.DialJoin(tctx, rtc.ClientOptions{URL: entry, API: v.api, Logger: testLogger(t), RequestTimeout: 3 * time.Second},
		"demo", clusterChannel, v.uid, tok)
	if err != nil {
		return err
	}
	defer c.Close()
	unblock := context.AfterFunc(ctx, func() { c.Close() })
	defer unblock()
	go func() { <-c.Done(); c.Close() }()
	if v.talk {
		if _, err := rtctest.PublishTone(ctx, c, clusterTalkHz); err != nil {
			return err
		}
	}
	v.mu.Lock()
	v.sessions++
	v.joinedAt = c.URL()
	v.mu.Unlock()
	var track *webrtc.TrackRemote
	for track == nil {
		track, err = c.Subscribe(ctx, v.device, rtc.KindVideo)
		if err != nil {
			// Not published yet (the device is on its way): wait for it.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.Done():
				return c.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	for first := true; ; {
		track.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, _, err := track.ReadRTP(); err == nil {
			v.mu.Lock()
			v.lastPacket = time.Now()
			if first {
				v.fresh, first = v.lastPacket, false
			}
			v.mu.Unlock()
			continue
		}
		if ctx.Err() != nil || c.Err() != nil {
			return c.Err()
		}
	}
}

func (v *clusterViewer) hub() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.joinedAt
}

// talkAfter waits until the last half second the device's speaker wrote past sample from
// carries the viewer's tone, and returns when the tone began: the first 20 ms frame of the
// loud run that ends the file, timed by its distance from the end (the mixer writes the
// speaker in real time).
func talkAfter(t *testing.T, speaker string, from int, timeout time.Duration) time.Time {
	t.Helper()
	n := device.SampleRate / 2
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		samples, _, _, err := wav.ReadFile(speaker)
		now := time.Now()
		if err == nil && len(samples) < from {
			from = 0 // a new file
		}
		if err == nil && len(samples)-from >= n {
			w := samples[len(samples)-n:]
			if f := audio.DominantFrequency(w, device.SampleRate); audio.RMS(w) > 1000 && f > clusterTalkHz-30 && f < clusterTalkHz+30 {
				frame, start := device.SampleRate/50, len(samples)-n
				for start-frame >= from && audio.RMS(samples[start-frame:start]) > 1000 {
					start -= frame
				}
				return now.Add(-time.Duration(len(samples)-start) * time.Second / time.Duration(device.SampleRate))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the viewer's voice never reached the speaker (%s, %d samples, %v)", speaker, len(samples), err)
		}
	}
}

func speakerSamples(path string) int {
	s, _, _, _ := wav.ReadFile(path)
	return len(s)
}

// natsTrust writes the cluster's authorization block as an operator does (docs/nats.md):
// `camhub nats passwd` for the device's credential and the hubs' password, then `camhub
// nats users` over the hubs' state directory; it returns the block's text.
func natsTrust(t *testing.T, hubBin, state, device, cred, hubUser, hubPass string) string {
	t.Helper()
	dir := t.TempDir()
	passwd, users := filepath.Join(dir, "camagent-passwd"), filepath.Join(dir, "camagent-users.conf")
	run := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(hubBin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("camhub %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(cred, "nats", "passwd", passwd, device)
	run(hubPass, "nats", "passwd", passwd, hubUser)
	run("", "nats", "users", "--passwd", passwd, "--state-dir", state, "--hub-user", hubUser, "--out", users)
	text, err := os.ReadFile(users)
	must(t, err, "read the users block")
	return string(text)
}

// brokerList is the nodes' MQTT URLs starting at node first (each client's own order).
func brokerList(nodes []*natstest.Node, first int) string {
	var urls []string
	for i := range nodes {
		urls = append(urls, nodes[(first+i)%len(nodes)].MQTTURL())
	}
	return strings.Join(urls, ",")
}

// resumeBar is issue 16's bound on a call's recovery after its hub is killed.
const resumeBar = 5 * time.Second

// clusterIdentities makes the one state directory the three hubs share (the same identities
// and App certificate; on several machines, the same files: docs/scaling.md) with the device
// porch enrolled and an API key that may command it, mint tokens and read metrics on channel.
func clusterIdentities(t *testing.T, channel string) (state, cred string, dev auth.Device, key string) {
	t.Helper()
	state = filepath.Join(t.TempDir(), "hubs")
	st, err := auth.Open(state)
	must(t, err, "identities")
	cred, dev, err = st.AddDevice("porch", 0)
	must(t, err, "enrol porch")
	key, _, err = st.AddKey(auth.Key{Name: "app", Devices: []string{"porch"}, Apps: []string{"demo"}, Channels: []string{channel},
		Actions: []string{auth.PermCommand, "token", "metrics"}})
	must(t, err, "add key")
	return state, cred, dev, key
}

func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three hub processes, a NATS cluster and a device: not in -short")
	}
	hubBin, agentBin := rigBinaries(t)
	redis := clustertest.StartRedis(t, "e2e-redis-password")
	state, cred, dev, key := clusterIdentities(t, clusterChannel)

	hubPass := "camhub-" + strings.Repeat("k", 30)
	nodes := natstest.StartCluster(t, natsTrust(t, hubBin, state, "porch", cred, "camhub", hubPass))
	env := []string{"CAMHUB_CLUSTER_REDIS=" + redis, "CAMHUB_MQTT_USERNAME=camhub", "CAMHUB_MQTT_PASSWORD=" + hubPass,
		"CAMHUB_ICE_LOOPBACK_ONLY=true"}
	// hub1 tries n2 first, hub2 n3, hub3 n1; the agent n1: commands cross the cluster's routes.
	var hubs []*clusterHub
	for i, id := range []string{"hub1", "hub2", "hub3"} {
		hubs = append(hubs, startClusterHub(t, hubBin, id, env, "--state-dir", state, "--mqtt", brokerList(nodes, i+1)))
	}
	byURL := map[string]*clusterHub{}
	for _, h := range hubs {
		byURL[rtc.HubWebSocketURL(h.url())] = h
	}
	probe, err := cluster.New(cluster.Options{Redis: redis, HubID: "e2e-probe", PublicURL: "http://127.0.0.1:1"})
	must(t, err, "probe")
	owner := func() string {
		o, err := probe.Owner(context.Background(), "demo", clusterChannel)
		must(t, err, "channel owner")
		return o
	}

	a := newAgentProc(t, agentBin, "porch", brokerList(nodes, 0), hubs[0].url())
	// QoS 0 publishes, as docs/nats.md advises for a NATS cluster.
	a.env = []string{"CAMAGENT_MQTT_USERNAME=porch", "CAMAGENT_MQTT_PASSWORD=" + cred, "CAMAGENT_HUB_KEY=" + cred, "CAMAGENT_MQTT_QOS0=true"}
	a.start()
	speaker := filepath.Join(a.dir, "speaker.wav")

	// The talking viewer enters through hub2, first: the channel is placed there (no hub is
	// loaded). A second viewer, watching only, enters through hub3.
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	must(t, err, "api")
	viewers := []*clusterViewer{
		{api: api, entries: []string{hubs[1].url(), hubs[2].url(), hubs[0].url()}, key: key, uid: 7001, device: dev.UID, talk: true},
		{api: api, entries: []string{hubs[2].url(), hubs[0].url(), hubs[1].url()}, key: key, uid: 7002, device: dev.UID},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, v := range viewers {
		wg.Add(1)
		go func() { defer wg.Done(); v.run(ctx, t) }()
		for deadline := time.Now().Add(20 * time.Second); v.hub() == ""; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("viewer %d never joined: %v", v.uid, v.lastErr)
			}
		}
	}

	// The device is told through hub3's API, and joins through hub1: sent on to hub2.
	command(t, hubs[2], key, `{"action":"join","channel":"`+clusterChannel+`"}`, 20*time.Second)
	for _, v := range viewers {
		v.videoAfter(t, time.Now(), 20*time.Second)
	}
	talkAfter(t, speaker, 0, 20*time.Second)
	first := byURL[viewers[0].hub()]
	if first != hubs[1] || owner() != "hub2" || byURL[viewers[1].hub()] != first {
		t.Fatalf("the channel is on %v (owner %q, second viewer on %q), want hub2, where the viewer entered first",
			first, owner(), viewers[1].hub())
	}
	checkUsers(t, hubs, first, key, 3, nil)

	// kill -9 the channel's hub: nobody says goodbye, its leases run out.
	killedAt := time.Now()
	before := speakerSamples(speaker)
	first.p.stop(syscall.SIGKILL, 5*time.Second)
	var video []time.Duration
	for _, v := range viewers {
		video = append(video, v.videoOnNewSession(t, killedAt, 30*time.Second).Sub(killedAt).Round(time.Millisecond))
	}
	talk := talkAfter(t, speaker, before, 30*time.Second).Sub(killedAt).Round(time.Millisecond)
	now := owner()
	second := byURL[viewers[0].hub()]
	if now == "" || now == first.id || second == nil || second.id != now || byURL[viewers[1].hub()] != second {
		t.Fatalf("after the kill: owner %q, viewers on %q and %q", now, viewers[0].hub(), viewers[1].hub())
	}
	checkUsers(t, hubs, second, key, 3, first)
	t.Logf("FAULT cluster hub kill -9 (%s, the channel's; lease 3s): video again at the viewers after %v, the viewer's voice at the device's speaker after %v, on %s",
		first.id, video, talk, now)
	if slices.Max(video) > resumeBar || talk > resumeBar {
		t.Errorf("the call resumed after %v (video) and %v (voice), beyond the issue's %v", slices.Max(video), talk, resumeBar)
	}

	// What a redirect costs a join: dial and join straight at the channel's hub, and through
	// another (one REDIRECT, a second dial).
	other := hubs[0]
	if other == second {
		other = hubs[2]
	}
	direct, redirected := joinTimes(t, api, key, second.url(), 10), joinTimes(t, api, key, other.url(), 10)
	t.Logf("CLUSTER join (dial + join reply), 10 each: at the channel's hub p50 %v max %v; through another hub (one redirect) p50 %v max %v",
		pct(direct, .5).Round(10*time.Microsecond), pct(direct, 1).Round(10*time.Microsecond),
		pct(redirected, .5).Round(10*time.Microsecond), pct(redirected, 1).Round(10*time.Microsecond))

	natsNodeKill(t, nodes, []*clusterHub{hubs[0], hubs[2]}, key, hubPass, viewers[0])
}

// natsNodeKill kills the NATS node the agent is connected to and sends commands through each
// live hub: each must be answered exactly once (a watcher on another node counts the
// commands and replies on the device's topics), and the call goes on.
func natsNodeKill(t *testing.T, nodes []*natstest.Node, live []*clusterHub, key, hubPass string, v *clusterViewer) {
	t.Helper()
	var agentNode *natstest.Node
	for _, n := range nodes {
		if n.HasUser("porch") {
			agentNode = n
		}
	}
	if agentNode == nil {
		t.Fatal("the agent has no connection to any NATS node (/connz)")
	}
	var rest []*natstest.Node
	for _, n := range nodes {
		if n != agentNode {
			rest = append(rest, n)
		}
	}
	// The watcher, on a node that stays, as the hubs' account, connected before the kill:
	// while JetStream elects new leaders the nodes refuse new MQTT sessions for seconds, and
	// the commands should not wait for the watcher.
	w, err := dialWatch(t, rest[len(rest)-1].MQTTURL(), "porch", "camhub", hubPass)
	if err != nil {
		t.Fatal(err)
	}
	leads, err := agentNode.Leads()
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	agentNode.Kill()
	var back *natstest.Node
	for deadline := time.Now().Add(45 * time.Second); back == nil; time.Sleep(50 * time.Millisecond) {
		for _, n := range rest {
			if n.HasUser("porch") {
				back = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent not on %s or %s 45 s after %s was killed", rest[0].Name, rest[1].Name, agentNode.Name)
		}
	}
	reconnected := time.Since(killedAt)
	var ids []string
	var firstAnswer time.Duration
	for i := range 6 {
		h := live[i%len(live)]
		ids = append(ids, commandWithin(t, h, key, `{"action":"status"}`, time.Second, 60*time.Second))
		if i == 0 {
			firstAnswer = time.Since(killedAt)
		}
	}
	time.Sleep(2 * time.Second) // a late duplicate would come by now
	sent, replies := map[string]int{}, map[string]int{}
	w.mu.Lock()
	for _, m := range w.msgs {
		var r control.Reply
		if json.Unmarshal([]byte(m.payload), &r) != nil || r.ID == "" {
			continue
		}
		switch m.topic {
		case "camagent/porch/cmd":
			sent[r.ID]++
		case "camagent/porch/reply":
			replies[r.ID]++
		}
	}
	seen := len(w.msgs)
	w.mu.Unlock()
	for _, id := range ids {
		if sent[id] != 1 || replies[id] != 1 {
			t.Errorf("command %s: sent %d times, answered %d times, want once each", id, sent[id], replies[id])
		}
	}
	for id, n := range replies {
		if n != 1 {
			t.Errorf("command %s answered %d times", id, n)
		}
	}
	v.videoAfter(t, time.Now(), 5*time.Second) // the call never needed the broker
	t.Logf("FAULT cluster NATS node kill -9 (%s, the agent's; it led %v, re-elected after: %s): the agent connected to %s after %v; first command answered %v after the kill; %d commands through %d hubs, each sent and answered once (%d attempts, %d messages seen); video still at the viewer afterwards",
		agentNode.Name, leads, natstest.Reelected(leads, killedAt, rest), back.Name, reconnected.Round(time.Millisecond), firstAnswer.Round(time.Millisecond),
		len(ids), len(live), len(sent), seen)
}

// command sends the device a command through hub's API until it is answered OK (a hub
// between brokers answers 502, a device between brokers lets it time out) and returns the
// id of the answered one.
func command(t *testing.T, hub *clusterHub, key, body string, timeout time.Duration) string {
	t.Helper()
	return commandWithin(t, hub, key, body, 0, timeout)
}

// commandWithin is command with each request given up after attempt (0: the hub's own
// 15 s), as an app does that retries a command nobody answers: a command sent while the
// device moves between brokers is lost (not queued: a clean session), not late.
func commandWithin(t *testing.T, hub *clusterHub, key, body string, attempt, timeout time.Duration) string {
	t.Helper()
	var last string
	client := &http.Client{Timeout: attempt}
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodPost, hub.url()+"/api/devices/porch/cmd", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err == nil {
			var r control.Reply
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if r.OK {
				return r.ID
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s through %s: %s", body, hub.id, last)
		}
	}
}

// checkUsers checks that the channel's users are all on hub on: want there, none on the
// others (but dead, killed).
func checkUsers(t *testing.T, hubs []*clusterHub, on *clusterHub, key string, want int, dead *clusterHub) {
	t.Helper()
	for _, h := range hubs {
		if h == dead {
			continue
		}
		w := map[bool]int{true: want, false: 0}[h == on]
		if n := h.users(t, key); n != w {
			t.Fatalf("%s has %d users, want %d: the channel must run on one hub", h.id, n, w)
		}
	}
}

// joinTimes joins the cluster channel n times through hub (new uids, subscriber only) and
// returns how long each dial and join took.
func joinTimes(t *testing.T, api *webrtc.API, key, hub string, n int) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []time.Duration
	for i := range n {
		uid := uint32(7100 + i)
		tok, err := hubToken(ctx, http.DefaultClient, hub, key, clusterChannel, uid)
		must(t, err, "token")
		t0 := time.Now()
		c, _, err := rtc.DialJoin(ctx, rtc.ClientOptions{URL: hub, API: api, Logger: testLogger(t)}, "demo", clusterChannel, uid, tok)
		must(t, err, fmt.Sprintf("join through %s", hub))
		out = append(out, time.Since(t0))
		c.Leave(ctx)
	}
	slices.Sort(out)
	return out
}
