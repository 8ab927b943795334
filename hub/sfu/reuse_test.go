package sfu

import (
	"context"
	"testing"
	"time"

	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtcp"
)

// TestResubscribeReusesMLine: a viewer that unsubscribes and subscribes again, three times, gets
// a whole keyframe each time on the m-line the previous subscription left inactive: its
// subscribe connection ends with one transceiver, not three (each added m-line would stay for
// good and make every later offer and answer longer).
func TestResubscribeReusesMLine(t *testing.T) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, url := startTestService(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub, err := joinChannel(ctx, url, api, "reuse", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publishCamera(ctx, t, pub, synth.CameraOptions{GOP: time.Minute}, func(cam *synth.Camera, pkts []rtcp.Packet) {
		if peer.WantsKeyframe(pkts) {
			cam.RequestKeyframe()
		}
	})
	viewer, err := joinChannel(ctx, url, api, "reuse", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	time.Sleep(300 * time.Millisecond) // the publisher's stream is at the hub

	const rounds = 3
	for i := range rounds {
		select {
		case r := <-watchFirstFrame(ctx, viewer, 1):
			if r.err != "" || !r.idr {
				t.Fatalf("subscription %d: error %q, first frame an IDR: %v", i+1, r.err, r.idr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("subscription %d: no frame in 10 s", i+1)
		}
		if i < rounds-1 {
			if err := viewer.Unsubscribe(ctx, 1, rtc.KindVideo); err != nil {
				t.Fatalf("unsubscribe %d: %v", i+1, err)
			}
		}
	}
	sess := svc.channels[channelKey{"demo", "reuse"}].lookup(10)
	sess.mu.Lock()
	pc := sess.sub
	sess.mu.Unlock()
	if n := len(pc.GetTransceivers()); n != 1 {
		t.Errorf("after %d subscriptions to one track, one at a time, the subscribe connection has %d transceivers, want 1", rounds, n)
	}
}
