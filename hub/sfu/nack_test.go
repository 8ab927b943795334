package sfu

import (
	"context"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/interceptor"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// TestNACKRecovery: with 5 % of the video packets lost between hub and subscriber, the hub
// resends them from its cache on NACK and every frame arrives complete.
func TestNACKRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("streams through a lossy link until every frame is complete: not in -short")
	}
	loss := &rtctest.LossyLink{Rate: 0.05}
	hubAPI, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true, NoNACKResponder: true, Interceptors: []interceptor.Factory{loss}})
	if err != nil {
		t.Fatal(err)
	}
	_, url := startTestService(t, Options{API: hubAPI})
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	join := func(uid uint32) *rtc.Client {
		c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
		if err != nil {
			t.Fatal(err)
		}
		tok, _, _ := token.Mint("demo", testCert, "lossy", uid, token.RolePublisher, time.Hour, time.Now())
		if _, err := c.Join(ctx, "demo", "lossy", uid, tok); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// The publisher: the synthetic camera.
	pub := join(1)
	publishSynthCamera(ctx, t, pub, nil)

	sub := join(2)
	remote, err := sub.Subscribe(ctx, 1, rtc.KindVideo)
	if err != nil {
		t.Fatal(err)
	}
	sb := samplebuilder.New(512, &codecs.H264Packet{}, 90000)
	var counters []uint64
	for len(counters) < 150 {
		remote.SetReadDeadline(time.Now().Add(5 * time.Second))
		pkt, _, err := remote.ReadRTP()
		if err != nil {
			t.Fatalf("read video: %v", err)
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			if n, _, ok := h264.ParseFrameInfo(s.Data); ok {
				counters = append(counters, n)
			}
		}
	}
	missing := 0
	for i := 1; i < len(counters); i++ {
		missing += int(counters[i]-counters[i-1]) - 1
	}
	resent := loss.Resent()
	t.Logf("%d frames; %d video packets lost on the way, %d resent by the hub; %d frames missing",
		len(counters), loss.Dropped(), resent, missing)
	if loss.Dropped() == 0 {
		t.Fatal("no packet was lost: the lossy link did not run")
	}
	if missing > 0 {
		t.Errorf("%d frames never completed despite NACKs", missing)
	}
}
