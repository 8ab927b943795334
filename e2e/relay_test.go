package e2e

// Issue 16's relay with the device itself: camagent (synthetic camera) publishes into a channel
// of a three-hub cluster (real redis-server, hub1's embedded broker) with cluster.relayAbove 1,
// so the first viewer watches at the channel's hub and the next two are placed on relays, one
// on each other hub. Every viewer receives every frame from a keyframe on (the synthetic
// camera's frame counter, no sequence gap), and the agent's own send counters show its uplink
// carried one copy of the video however many hubs watched it.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/hub/cluster/clustertest"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

const relayChannel = "relayed"

// relayWatch is what one viewer saw: the synthetic camera's counters of the access units it
// got, its first access unit's kind, sequence gaps and RTP bytes.
type relayWatch struct {
	hub      string
	counters []uint64
	firstKey bool
	gaps     int
	bytes    int
	err      error
}

// watchFor reads a video track until end: access units (marker bit ends one), their counters,
// whether the first was a keyframe, and the RTP bytes that arrived from from on.
func watchFor(track *webrtc.TrackRemote, from, end time.Time) relayWatch {
	var (
		w      relayWatch
		depack codecs.H264Packet
		cur    []byte
		last   uint16
		n      int
		units  int
	)
	for time.Now().Before(end) {
		track.SetReadDeadline(time.Now().Add(2 * time.Second))
		pkt, _, err := track.ReadRTP()
		if err != nil {
			w.err = err
			return w
		}
		if n > 0 && pkt.SequenceNumber != last+1 {
			w.gaps++
		}
		n, last = n+1, pkt.SequenceNumber
		if !time.Now().Before(from) {
			w.bytes += pkt.MarshalSize()
		}
		payload, err := depack.Unmarshal(pkt.Payload)
		if err != nil {
			continue
		}
		cur = append(cur, payload...)
		if pkt.Marker {
			if units == 0 {
				w.firstKey = h264.IsKeyframe(cur)
			}
			units++
			if c, _, ok := h264.ParseFrameInfo(cur); ok {
				w.counters = append(w.counters, c)
			}
			cur = nil
		}
	}
	return w
}

// agentVideoBytes reads the agent's camagent_sent_bytes_total{kind="video"}.
func agentVideoBytes(t *testing.T, a *agentProc) int {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + a.metrics + "/metrics")
	must(t, err, "agent metrics")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err, "read agent metrics")
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, `camagent_sent_bytes_total{kind="video"} `); ok {
			n, err := strconv.Atoi(v)
			must(t, err, "parse "+l)
			return n
		}
	}
	t.Fatalf("no camagent_sent_bytes_total{kind=\"video\"} in the agent's metrics (%s)", resp.Status)
	return 0
}

func TestRelayDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("three hub processes and a device: not in -short")
	}
	hubBin, agentBin := rigBinaries(t)
	redis := clustertest.StartRedis(t, "e2e-redis-password")
	state, cred, dev, key := clusterIdentities(t, relayChannel)

	mqttAddr := freeAddr(t)
	bridge := "bridge-" + strings.Repeat("k", 30)
	env := []string{"CAMHUB_CLUSTER_REDIS=" + redis, "CAMHUB_CLUSTER_RELAY_ABOVE=1", "CAMHUB_MQTT_USERNAME=bridge",
		"CAMHUB_MQTT_PASSWORD=" + bridge, "CAMHUB_ICE_LOOPBACK_ONLY=true"}
	hubs := []*clusterHub{startClusterHub(t, hubBin, "hub1", env, "--state-dir", state, "--mqtt", "embedded", "--mqtt-listen", mqttAddr)}
	for _, id := range []string{"hub2", "hub3"} {
		hubs = append(hubs, startClusterHub(t, hubBin, id, env, "--state-dir", state, "--mqtt", "tcp://"+mqttAddr))
	}
	// Each hub learns the others from the directory as it renews its registration (every
	// lease/3, 1 s): give them two rounds, or hub1 would see no other hub to relay on.
	time.Sleep(2500 * time.Millisecond)
	a := newAgentProc(t, agentBin, "porch", "tcp://"+mqttAddr, hubs[0].url())
	a.env = []string{"CAMAGENT_MQTT_USERNAME=porch", "CAMAGENT_MQTT_PASSWORD=" + cred, "CAMAGENT_HUB_KEY=" + cred}
	a.start()
	command(t, hubs[0], key, `{"action":"join","channel":"`+relayChannel+`"}`, 20*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	must(t, err, "api")
	// Viewers (subscriber tokens: relayAbove counts users that may not publish video), one at
	// a time so that placement sees each: through hub2 (sent to the channel's hub), hub3 and
	// hub1 (sent to relays).
	// Each viewer reads from its subscription on (its first access unit must be a keyframe)
	// until end; bytes count over the last window, when all three watch.
	const window = 4 * time.Second
	var placed []string
	watches := make([]relayWatch, 3)
	var wg sync.WaitGroup
	var from, end time.Time
	started := make(chan struct{})
	for i, entry := range []*clusterHub{hubs[1], hubs[2], hubs[0]} {
		uid := uint32(8001 + i)
		tok, err := hubTokenAs(ctx, http.DefaultClient, entry.url(), key, relayChannel, uid, "subscriber")
		must(t, err, "viewer token")
		c, _, err := rtc.DialJoin(ctx, rtc.ClientOptions{URL: entry.url(), API: api, Logger: testLogger(t)}, "demo", relayChannel, uid, tok)
		must(t, err, fmt.Sprintf("viewer %d join through %s", uid, entry.id))
		t.Cleanup(func() { c.Close() })
		var track *webrtc.TrackRemote
		for deadline := time.Now().Add(20 * time.Second); track == nil; time.Sleep(100 * time.Millisecond) {
			if track, err = c.Subscribe(ctx, dev.UID, rtc.KindVideo); err != nil && time.Now().After(deadline) {
				t.Fatalf("viewer %d on %s: no video from the device: %v", uid, c.URL(), err)
			}
		}
		placed = append(placed, c.URL())
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-started
			watches[i] = watchFor(track, from, end)
		}()
	}
	seen := map[string]bool{}
	for _, p := range placed {
		seen[p] = true
	}
	if len(seen) != 3 {
		for _, h := range hubs {
			t.Logf("%s:\n%s", h.id, h.p.output())
		}
		t.Fatalf("viewers placed on %v, want three hubs (the channel's and two relays)", placed)
	}
	from = time.Now().Add(500 * time.Millisecond)
	end = from.Add(window)
	close(started)
	time.Sleep(time.Until(from))
	sentBefore := agentVideoBytes(t, a)
	time.Sleep(time.Until(end))
	sent := agentVideoBytes(t, a) - sentBefore
	wg.Wait()
	for i, w := range watches {
		w.hub = placed[i]
		if w.err != nil || len(w.counters) < 60 {
			t.Fatalf("viewer on %s: %d frames in %v (%v)", w.hub, len(w.counters), window, w.err)
		}
		missing := 0
		for k := 1; k < len(w.counters); k++ {
			if d := w.counters[k] - w.counters[k-1]; d != 1 {
				missing += int(d) - 1
			}
		}
		if !w.firstKey {
			t.Fatalf("viewer on %s: its first access unit was not a keyframe", w.hub)
		}
		if missing != 0 || w.gaps != 0 {
			t.Fatalf("viewer on %s: %d frames missing, %d sequence gaps over %d frames", w.hub, missing, w.gaps, len(w.counters))
		}
		t.Logf("viewer on %s: %d frames, every one (counters %d…%d), %d bytes", w.hub, len(w.counters), w.counters[0],
			w.counters[len(w.counters)-1], w.bytes)
	}
	// One copy: the agent's video bytes over the window against one viewer's (each hub
	// forwards what it got); three copies would be ~3.
	ratio := float64(sent) / float64(watches[0].bytes)
	t.Logf("RELAY device uplink: %d video bytes sent by the agent while each viewer got %d–%d: %.2f copies", sent,
		min(watches[0].bytes, watches[1].bytes, watches[2].bytes), max(watches[0].bytes, watches[1].bytes, watches[2].bytes), ratio)
	if ratio > 1.5 || ratio < 0.5 {
		t.Fatalf("the agent sent %.2f copies of its video for viewers on three hubs, want one", ratio)
	}
}
