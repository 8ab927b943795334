package hub

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/cluster/clustertest"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
)

// TestRelayOriginStops: the channel's hub stops while a relayed viewer watches; the publisher
// rejoins through another hub, where the channel is placed again; the relay finds it there
// and the viewer, never leaving its relay hub, gets the video again, starting at a keyframe,
// with every frame from there.
func TestRelayOriginStops(t *testing.T) {
	if testing.Short() {
		t.Skip("three hubs and a Redis, a hub stopped: not in -short")
	}
	redis := clustertest.StartRedis(t, "")
	cfg1 := relayHubConfig(t, redis, "hub1", 1)
	h1, err := New(cfg1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	ended1 := make(chan struct{})
	go func() {
		defer close(ended1)
		if err := h1.Run(ctx1); err != nil {
			t.Errorf("hub1: %v", err)
		}
	}()
	t.Cleanup(func() { stop1(); <-ended1 })
	select {
	case <-h1.Ready():
	case <-ended1:
		t.Fatal("hub1 ended at start")
	}
	hubs := []*Hub{h1, startRelayHub(t, redis, "hub2", 1), startRelayHub(t, redis, "hub3", 1)}
	byURL, opts := relayClients(t, hubs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const pubUID = 100
	publish := func(entry *Hub, from, to int) (*rtc.Client, <-chan struct{}) {
		t.Helper()
		c, _, err := rtc.DialJoin(ctx, opts(entry), "demo", relayChannel, pubUID, relayToken(t, pubUID, true))
		if err != nil {
			t.Fatalf("publisher join through %s: %v", entry.cfg.Cluster.HubID, err)
		}
		video := newVideoTrack(t)
		var written atomic.Int64
		sent := sendFrames(t, video, from, to, &written)
		if _, err := c.Publish(ctx, video); err != nil {
			t.Fatalf("publish: %v", err)
		}
		return c, sent
	}
	pub, _ := publish(hubs[0], 0, 1000)
	defer pub.Close()

	// The first viewer stays on hub1, the second is relayed; it subscribes to every video
	// the publisher publishes, as an app does.
	first, _, err := rtc.DialJoin(ctx, opts(hubs[0]), "demo", relayChannel, 201, relayToken(t, 201, false))
	if err != nil {
		t.Fatalf("viewer 201: %v", err)
	}
	defer first.Close()
	c, res, err := rtc.DialJoin(ctx, opts(hubs[0]), "demo", relayChannel, 202, relayToken(t, 202, false))
	if err != nil {
		t.Fatalf("viewer 202: %v", err)
	}
	defer c.Close()
	v := &relayViewer{name: "202", hub: byURL[c.URL()], FrameLog: rtctest.NewFrameLog()}
	if v.hub == "hub1" {
		t.Fatal("viewer 202 is on hub1, want a relay")
	}
	watch := func() {
		tr, err := c.Subscribe(ctx, pubUID, rtc.KindVideo)
		if err != nil {
			t.Errorf("viewer 202 subscribe: %v", err)
			return
		}
		v.Read(tr)
	}
	if len(res.Users) > 0 {
		go watch()
	}
	go func() {
		for m := range c.Events() {
			if m.Event == rtc.EventUserPublished && m.UID != nil && *m.UID == pubUID && m.Kind == rtc.KindVideo {
				go watch()
			}
		}
	}()
	time.Sleep(2 * time.Second)

	// hub1 stops; the publisher comes back through hub3 (the least loaded hub then).
	stop1()
	stoppedAt := time.Now()
	<-ended1
	pub.Close()
	pub2, sent := publish(hubs[2], 1000, 1150)
	defer pub2.Close()
	<-sent
	time.Sleep(time.Second)

	from, missing := v.Missing(1000, 1150)
	if from == 1150 {
		t.Fatalf("viewer 202 on %s: no video after hub1 stopped", v.hub)
	}
	if len(missing) > 0 {
		t.Errorf("viewer 202 after the stop: frames %d-1149: %d missing: %v", from, len(missing), missing)
	}
	v.Mu.Lock()
	defer v.Mu.Unlock()
	again := v.Arrived[from]
	if last := v.Starts[len(v.Starts)-1]; last[0]&0x1f != 7 {
		t.Errorf("viewer 202's subscription after the stop starts with %x, not an SPS", last[:2])
	}
	t.Logf("RELAY origin hub1 stopped: the relayed viewer on %s (same session) has video again after %s, from frame %d, all %d since (publisher now on %s)",
		v.hub, again.Sub(stoppedAt).Round(time.Millisecond), from, 1150-from, byURL[pub2.URL()])
}
