// relay.go: make scale's relay run (docs/scaling.md, "Relays"): three hubs in this process
// share a redis-server; one publisher (synthetic H.264, 30 fps, a keyframe a second, every
// packet carrying its frame number) on the first; viewers all entering through the first
// hub, with cluster.relayAbove a third of them, so that they end a third on each hub; the
// stream lasts until 8 s after the last viewer joined. It reports how they were placed,
// whether each got every frame from its first (a keyframe) to the last one sent,
// the publisher's uplink in copies of its stream, and how much later a relayed viewer gets
// each frame than the first viewer on the origin that got it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/cluster/clustertest"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/internal/freeport"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/webrtc/v4"
)

const relayCert = "scale-relay-certificate-0123456789"

// relayHubs starts n hubs of one cluster; they end with ctx (wait waits for them).
func relayHubs(ctx context.Context, dir, redis string, n, above int) ([]*hub.Hub, func(), error) {
	var hubs []*hub.Hub
	var ended []chan struct{}
	wait := func() {
		for _, e := range ended {
			<-e
		}
	}
	for i := range n {
		addr, err := freeport.Addr()
		if err != nil {
			return nil, wait, err
		}
		id := fmt.Sprintf("hub%d", i+1)
		cfg := hub.Defaults()
		cfg.Demo, cfg.Listen, cfg.MQTTListen, cfg.ICELoopbackOnly = true, addr, "127.0.0.1:0", "true"
		cfg.StateDir = filepath.Join(dir, id)
		cfg.Apps = []hub.App{{ID: "demo", Certificate: relayCert}}
		cfg.MaxConnectionsPerAddress = 1000 // every viewer is on 127.0.0.1
		cfg.Cluster = hub.Cluster{Redis: redis, HubID: id, PublicURL: "http://" + addr, RelayAbove: above}
		if err := cfg.Validate(); err != nil {
			return nil, wait, err
		}
		h, err := hub.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("hub", id))
		if err != nil {
			return nil, wait, err
		}
		e := make(chan struct{})
		ended = append(ended, e)
		go func() {
			defer close(e)
			if err := h.Run(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "scale relay:", id, err)
			}
		}()
		select {
		case <-h.Ready():
		case <-e:
			return nil, wait, fmt.Errorf("%s ended at start", id)
		}
		hubs = append(hubs, h)
	}
	return hubs, wait, nil
}

func runRelay(viewers, above int) (relayResult, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "camagent-scale-relay-")
	if err != nil {
		return relayResult{}, err
	}
	defer os.RemoveAll(dir)
	redis, stopRedis, err := clustertest.Start(dir, "")
	if err != nil {
		return relayResult{}, err
	}
	defer stopRedis()
	hubs, wait, err := relayHubs(ctx, dir, redis, 3, above)
	defer func() { cancel(); wait() }()
	if err != nil {
		return relayResult{}, err
	}
	byURL := map[string]int{}
	for i, h := range hubs {
		byURL[rtc.HubWebSocketURL(h.URL())] = i
	}
	time.Sleep(1500 * time.Millisecond) // every hub has read the others' registrations
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		return relayResult{}, err
	}
	opts := rtc.ClientOptions{URL: hubs[0].URL(), API: api, Logger: slog.New(slog.DiscardHandler)}
	join := func(uid uint32, privs ...string) (*rtc.Client, error) {
		tok, _, err := token.MintPrivileges("demo", relayCert, "scale", uid, append(privs, token.PrivJoin, token.PrivSubscribe), time.Hour, time.Now())
		if err != nil {
			return nil, err
		}
		c, _, err := rtc.DialJoin(ctx, opts, "demo", "scale", uid, tok)
		return c, err
	}
	pub, err := join(100, token.PrivPublishVideo)
	if err != nil {
		return relayResult{}, fmt.Errorf("publisher: %w", err)
	}
	defer pub.Close()
	video, err := rtctest.H264Track()
	if err != nil {
		return relayResult{}, err
	}
	var written atomic.Int64
	stop := make(chan struct{})
	sent := rtctest.SendH264(video, 0, 1<<30, &written, stop) // until 8 s after the last viewer joined
	if _, err := pub.Publish(ctx, video); err != nil {
		return relayResult{}, fmt.Errorf("publish: %w", err)
	}
	before := written.Load()
	logs := make([]*rtctest.FrameLog, viewers)
	on := make([]int, viewers) // each viewer's hub
	for i := range viewers {
		c, err := join(uint32(1000 + i))
		if err != nil {
			return relayResult{}, fmt.Errorf("viewer %d: %w", i, err)
		}
		defer c.Close()
		tr, err := c.Subscribe(ctx, 100, rtc.KindVideo)
		if err != nil {
			return relayResult{}, fmt.Errorf("viewer %d subscribe on hub%d: %w", i, byURL[c.URL()]+1, err)
		}
		logs[i], on[i] = rtctest.NewFrameLog(), byURL[c.URL()]
		go logs[i].Read(tr)
	}
	time.Sleep(8 * time.Second)
	close(stop)
	if err := <-sent; err != nil {
		return relayResult{}, err
	}
	time.Sleep(time.Second)
	return report(pub, logs, on, written.Load()-before, above), nil
}

// report prints the relay run's figures and returns them.
func report(pub *rtc.Client, logs []*rtctest.FrameLog, on []int, stream int64, above int) relayResult {
	perHub := make([]int, 3)
	complete, keyStart, frames := 0, 0, 0 // frames: one past the last frame any viewer got
	for _, l := range logs {
		l.Mu.Lock()
		for n := range l.Arrived {
			frames = max(frames, n+1)
		}
		l.Mu.Unlock()
	}
	first := map[int]time.Time{} // each frame's earliest arrival at an origin viewer
	for i, l := range logs {
		perHub[on[i]]++
		if from, missing := l.Missing(0, frames); from < frames && len(missing) == 0 {
			complete++
		}
		l.Mu.Lock()
		if len(l.Starts) > 0 && l.Starts[0][0]&0x1f == 7 {
			keyStart++
		}
		for n, at := range l.Arrived {
			if o, ok := first[n]; on[i] == 0 && (!ok || at.Before(o)) {
				first[n] = at
			}
		}
		l.Mu.Unlock()
	}
	var origin, relayed []time.Duration
	for i, l := range logs {
		l.Mu.Lock()
		for n, at := range l.Arrived {
			if o, ok := first[n]; ok && on[i] == 0 {
				origin = append(origin, at.Sub(o))
			} else if ok {
				relayed = append(relayed, at.Sub(o))
			}
		}
		l.Mu.Unlock()
	}
	var uplink uint64
	for _, s := range pub.PublishConnection().GetStats() {
		if ts, ok := s.(webrtc.TransportStats); ok && ts.ID == "iceTransport" {
			uplink = ts.BytesSent
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("relay     %d viewers on 3 hubs (%d/%d/%d, relayAbove %d): every frame at %d/%d, first a keyframe at %d/%d; publisher uplink %.2f copies; "+
		"after the first origin viewer: origin viewers p50 %s p95 %s, relayed viewers p50 %s p95 %s; load %s",
		len(logs), perHub[0], perHub[1], perHub[2], above, complete, len(logs), keyStart, len(logs), float64(uplink)/float64(stream),
		pct(origin, 50), pct(origin, 95), pct(relayed, 50), pct(relayed, 95), string(load[:min(len(load), 14)]))
	fmt.Println()
	return relayResult{viewers: len(logs), complete: complete, keyStart: keyStart, perHub: perHub, above: above,
		copies: float64(uplink) / float64(stream), origin50: pct(origin, 50), origin95: pct(origin, 95),
		relayed50: pct(relayed, 50), relayed95: pct(relayed, 95), load: strings.TrimSpace(string(load[:min(len(load), 14)]))}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*p/100)].Round(10 * time.Microsecond)
}
