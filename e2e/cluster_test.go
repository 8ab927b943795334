package e2e

// Several hubs as one service (docs/scaling.md): three camhub processes sharing a channel
// directory in a real redis-server, the first with the embedded broker the others read, in
// the default (secure) mode with an enrolled device and a scoped key. The viewer enters
// through hub2 and the device through hub1: the channel ends on one hub. That hub is killed
// with SIGKILL: the device and the viewer come back by themselves through their entry
// points and the call resumes on another hub (video at the viewer, the viewer's voice at
// the device's speaker). `make scale` prints the figures.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/cluster"
	"github.com/camagent/camagent/hub/cluster/clustertest"
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
		if t.Failed() {
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
	viewerClock           // faultrig_test.go; its mu guards the fields below too
	joinedAt       string // the hub the current session joined (its signalling URL)
	sessions, next int
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
	if _, err := rtctest.PublishTone(ctx, c, clusterTalkHz); err != nil {
		return err
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
	for {
		track.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, _, err := track.ReadRTP(); err == nil {
			v.mu.Lock()
			v.lastPacket = time.Now()
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
// carries the viewer's tone, and returns when it did.
func talkAfter(t *testing.T, speaker string, from int, timeout time.Duration) time.Time {
	t.Helper()
	n := device.SampleRate / 2
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		samples, _, _, err := wav.ReadFile(speaker)
		if err == nil && len(samples) < from {
			from = 0 // a new file
		}
		if err == nil && len(samples)-from >= n {
			w := samples[len(samples)-n:]
			if audio.RMS(w) > 1000 && audio.DominantFrequency(w, device.SampleRate) > clusterTalkHz-30 &&
				audio.DominantFrequency(w, device.SampleRate) < clusterTalkHz+30 {
				return time.Now()
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

func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three hub processes and a device: not in -short")
	}
	hubBin, agentBin := rigBinaries(t)
	redis := clustertest.StartRedis(t, "e2e-redis-password")

	// One state directory for the three hubs: the same identities and App certificate (on
	// several machines: the same files, docs/scaling.md).
	state := filepath.Join(t.TempDir(), "hubs")
	st, err := auth.Open(state)
	must(t, err, "identities")
	cred, dev, err := st.AddDevice("porch", 0)
	must(t, err, "enrol porch")
	key, _, err := st.AddKey(auth.Key{Name: "app", Devices: []string{"porch"}, Apps: []string{"demo"}, Channels: []string{clusterChannel},
		Actions: []string{auth.PermCommand, "token", "metrics"}})
	must(t, err, "add key")

	mqttAddr := freeAddr(t)
	bridge := "bridge-" + strings.Repeat("k", 30)
	env := []string{"CAMHUB_CLUSTER_REDIS=" + redis, "CAMHUB_MQTT_USERNAME=bridge", "CAMHUB_MQTT_PASSWORD=" + bridge,
		"CAMHUB_ICE_LOOPBACK_ONLY=true"}
	hubs := []*clusterHub{startClusterHub(t, hubBin, "hub1", env, "--state-dir", state, "--mqtt", "embedded", "--mqtt-listen", mqttAddr)}
	for _, id := range []string{"hub2", "hub3"} {
		hubs = append(hubs, startClusterHub(t, hubBin, id, env, "--state-dir", state, "--mqtt", "tcp://"+mqttAddr))
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

	a := newAgentProc(t, agentBin, "porch", "tcp://"+mqttAddr, hubs[0].url())
	a.env = []string{"CAMAGENT_MQTT_USERNAME=porch", "CAMAGENT_MQTT_PASSWORD=" + cred, "CAMAGENT_HUB_KEY=" + cred}
	a.start()
	speaker := filepath.Join(a.dir, "speaker.wav")

	// The viewer enters through hub2, first: the channel is placed there (no hub is loaded).
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	must(t, err, "api")
	v := &clusterViewer{api: api, entries: []string{hubs[1].url(), hubs[2].url(), hubs[0].url()}, key: key, uid: 7001, device: dev.UID}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); v.run(ctx, t) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(20 * time.Second); v.hub() == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the viewer never joined: %v", v.lastErr)
		}
	}

	// The device is told through hub3's API, and joins through hub1: sent on to hub2.
	command := func(hub *clusterHub, body string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			req, _ := http.NewRequest(http.MethodPost, hub.url()+"/api/devices/porch/cmd", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				var r struct{ OK bool }
				json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if r.OK {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("command %s through %s: %v", body, hub.id, err)
			}
		}
	}
	command(hubs[2], `{"action":"join","channel":"`+clusterChannel+`"}`)
	v.videoAfter(t, time.Now(), 20*time.Second)
	talkAfter(t, speaker, 0, 20*time.Second)
	first := byURL[v.hub()]
	if first != hubs[1] || owner() != "hub2" {
		t.Fatalf("the channel is on %v (owner %q), want hub2, where the viewer entered first", first, owner())
	}
	for _, h := range hubs {
		want := map[bool]int{true: 2, false: 0}[h == first]
		if n := h.users(t, key); n != want {
			t.Fatalf("%s has %d users, want %d: the channel must run on one hub", h.id, n, want)
		}
	}

	// kill -9 the channel's hub: nobody says goodbye, its leases run out.
	killedAt := time.Now()
	before := speakerSamples(speaker)
	first.p.stop(syscall.SIGKILL, 5*time.Second)
	video := v.videoAfter(t, killedAt, 30*time.Second)
	talk := talkAfter(t, speaker, before, 30*time.Second)
	now := owner()
	second := byURL[v.hub()]
	if now == "" || now == first.id || second == nil || second.id != now {
		t.Fatalf("after the kill: owner %q, viewer on %q", now, v.hub())
	}
	for _, h := range hubs {
		if h == first {
			continue
		}
		want := map[bool]int{true: 2, false: 0}[h == second]
		if n := h.users(t, key); n != want {
			t.Fatalf("after the kill %s has %d users, want %d", h.id, n, want)
		}
	}
	t.Logf("CLUSTER kill -9 of the channel's hub (%s): video again at the viewer after %v, the viewer's voice at the device's speaker after %v, on %s (lease 3s)",
		first.id, video.Sub(killedAt).Round(time.Millisecond), talk.Sub(killedAt).Round(time.Millisecond), now)

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
