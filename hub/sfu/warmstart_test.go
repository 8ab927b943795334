package sfu

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// firstFrame is what a viewer's first packets of a video track were.
type firstFrame struct {
	err     string
	first   *rtp.Packet
	idr     bool
	gapless bool // the first 40 packets have consecutive sequence numbers
	at      time.Time
}

// watchFirstFrame reads a subscribed video track until its first whole frame and 40 packets.
func watchFirstFrame(ctx context.Context, c *rtc.Client, uid uint32) <-chan firstFrame {
	out := make(chan firstFrame, 1)
	go func() {
		r := firstFrame{gapless: true}
		defer func() { out <- r }()
		remote, err := c.Subscribe(ctx, uid, rtc.KindVideo)
		if err != nil {
			r.err = "subscribe: " + err.Error()
			return
		}
		sb := samplebuilder.New(256, &codecs.H264Packet{}, 90000)
		var last uint16
		popped := false
		for n := 0; n < 40 || !popped; n++ {
			remote.SetReadDeadline(time.Now().Add(20 * time.Second))
			p, _, err := remote.ReadRTP()
			if err != nil {
				r.err = "read video: " + err.Error()
				return
			}
			if r.first == nil {
				r.first, r.at = p.Clone(), time.Now()
			} else if n < 40 && p.SequenceNumber != last+1 {
				r.gapless = false
			}
			last = p.SequenceNumber
			sb.Push(p)
			if s := sb.Pop(); s != nil && !popped {
				popped, r.idr = true, h264.IsKeyframe(s.Data)
			}
		}
	}()
	return out
}

// TestWarmStart: a viewer that subscribes while the publisher's last keyframe is recent starts
// from it at once, in order and without a gap, though this publisher answers no keyframe
// request; one that subscribes later waits for a new keyframe, which the hub asks for.
func TestWarmStart(t *testing.T) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	// A second, not 100 ms: a loaded machine must not turn the warm case into the other.
	const age = time.Second
	svc, url := startTestService(t, Options{WarmStartAge: age})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pub, err := joinChannel(ctx, url, api, "warm", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var requests atomic.Int64
	var answer atomic.Bool
	// One IDR a minute, and keyframe requests only counted: a viewer gets a picture only from
	// the hub's cache, or once the test lets the publisher answer.
	cam := publishCamera(ctx, t, pub, synth.CameraOptions{GOP: time.Minute}, func(cam *synth.Camera, pkts []rtcp.Packet) {
		if peer.WantsKeyframe(pkts) {
			requests.Add(1)
			if answer.Load() {
				cam.RequestKeyframe()
			}
		}
	})
	viewer := func(uid uint32) *rtc.Client {
		c, err := joinChannel(ctx, url, api, "warm", uid)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := viewer(10), viewer(11)
	time.Sleep(300 * time.Millisecond) // the publisher's stream is at the hub

	// Warm: a keyframe now, the subscription 200 ms later.
	cam.RequestKeyframe()
	keyAt := time.Now()
	time.Sleep(200 * time.Millisecond)
	warm0 := svc.Stats().WarmStarts
	began := time.Now()
	select {
	case r := <-watchFirstFrame(ctx, a, 1):
		switch {
		case r.err != "":
			t.Fatalf("warm viewer: %s", r.err)
		case h264Start(r.first.Payload) != startSPS || !r.idr:
			t.Errorf("warm viewer: first packet kind %d, first frame IDR %v: not a whole keyframe", h264Start(r.first.Payload), r.idr)
		case !r.gapless:
			t.Errorf("warm viewer: a gap in the first 40 packets (cached and live packets out of order)")
		}
		t.Logf("warm viewer: first packet %v after subscribing (the keyframe was %v old then)",
			r.at.Sub(began).Round(time.Millisecond), began.Sub(keyAt).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("warm viewer: no frame in 5 s: it was not started from the cached keyframe")
	}
	if got := svc.Stats().WarmStarts - warm0; got != 1 {
		t.Errorf("warm starts: %d, want 1", got)
	}

	// Stale: the keyframe is older than the age; the viewer waits for a new one.
	time.Sleep(time.Until(keyAt.Add(age + 300*time.Millisecond)))
	req0, warm1 := requests.Load(), svc.Stats().WarmStarts
	frames := watchFirstFrame(ctx, b, 1)
	select {
	case r := <-frames:
		t.Fatalf("stale viewer: got a picture (%v) though the keyframe was %v old and no new one was sent", r.err, time.Since(keyAt))
	case <-time.After(time.Second):
	}
	if svc.Stats().WarmStarts != warm1 {
		t.Errorf("stale viewer: warm-started from a keyframe %v old", time.Since(keyAt))
	}
	if requests.Load() == req0 {
		t.Errorf("stale viewer: the hub asked the publisher for no keyframe")
	}
	answer.Store(true)
	cam.RequestKeyframe()
	select {
	case r := <-frames:
		if r.err != "" || h264Start(r.first.Payload) != startSPS || !r.idr {
			t.Errorf("stale viewer after the new keyframe: err %q, IDR %v", r.err, r.idr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stale viewer: no frame 5 s after the publisher's new keyframe")
	}
}
