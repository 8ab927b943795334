package sfu

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

func TestH264Start(t *testing.T) {
	cases := []struct {
		name string
		p    []byte
		want int
	}{
		{"sps", []byte{0x67, 0x42}, startSPS},
		{"idr first slice", []byte{0x65, 0x88}, startIDR},
		{"idr later slice", []byte{0x65, 0x40}, startOther},
		{"p slice", []byte{0x41, 0x9a}, startOther},
		{"pps", []byte{0x68, 0xce}, startOther},
		{"sei", []byte{0x06, 0x05}, startPrefix},
		{"aud", []byte{0x09, 0xf0}, startPrefix},
		{"stap-a sps+pps", []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, startSPS},
		{"stap-a aud, sps", []byte{0x78, 0x00, 0x02, 0x09, 0xf0, 0x00, 0x02, 0x67, 0x42}, startSPS},
		{"stap-a pps first", []byte{0x78, 0x00, 0x02, 0x68, 0xce, 0x00, 0x02, 0x67, 0x42}, startOther},
		{"stap-a sei only", []byte{0x78, 0x00, 0x02, 0x06, 0x05}, startPrefix},
		{"stap-a truncated", []byte{0x78, 0x00}, startPrefix},
		{"stap-a size past the end", []byte{0x78, 0x00, 0x09, 0x67}, startSPS},
		{"fu-a idr first slice", []byte{0x7c, 0x85, 0x88}, startIDR},
		{"fu-a idr later slice", []byte{0x7c, 0x85, 0x40}, startOther},
		{"fu-a idr start, no slice byte", []byte{0x7c, 0x85}, startOther},
		{"fu-a continuation", []byte{0x7c, 0x05, 0x00}, startPrefix},
		{"fu-a p start", []byte{0x7c, 0x81, 0x88}, startOther},
		{"fu-b", []byte{0x7d, 0x85, 0x88}, startOther},
		{"empty", nil, startOther},
	}
	for _, tc := range cases {
		if got := h264Start(tc.p); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// pk is one RTP packet of a test stream.
func pk(ts uint32, marker bool, payload ...byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Timestamp: ts, Marker: marker}, Payload: payload}
}

// TestKeyGate: a waiting subscriber starts only at the first packet of a whole keyframe.
func TestKeyGate(t *testing.T) {
	stapSPS := []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}
	cases := []struct {
		name string
		vp8  bool
		pkts []*rtp.Packet
		want []bool // per packet: may a waiting subscriber start here
	}{
		{"in-band sps, two-slice idr, then p", false, []*rtp.Packet{
			pk(1, false, stapSPS...),
			pk(1, false, 0x7c, 0x85, 0x88), pk(1, false, 0x7c, 0x45, 0x00), // slice 1 (first_mb 0)
			pk(1, false, 0x7c, 0x85, 0x40), pk(1, true, 0x7c, 0x45, 0x00), // slice 2
			pk(2, true, 0x41, 0x9a),
		}, []bool{true, false, false, false, false, false}},
		{"joined mid-idr: the second slice is no start", false, []*rtp.Packet{
			pk(1, false, 0x7c, 0x85, 0x40), pk(1, true, 0x7c, 0x45, 0x00),
			pk(2, true, 0x41, 0x9a),
			pk(3, false, stapSPS...), pk(3, true, 0x65, 0x88),
		}, []bool{false, false, false, true, false}},
		{"aud before sps: start at the sps", false, []*rtp.Packet{
			pk(1, false, 0x09, 0xf0), pk(1, false, 0x67, 0x42), pk(1, false, 0x68, 0xce), pk(1, true, 0x65, 0x88),
		}, []bool{false, true, false, false}},
		{"sps in the middle of an access unit is no start", false, []*rtp.Packet{
			pk(1, false, 0x41, 0x9a), pk(1, false, 0x67, 0x42), pk(1, true, 0x65, 0x88),
		}, []bool{false, false, false}},
		{"no in-band sps: the first idr slice starts", false, []*rtp.Packet{
			pk(1, true, 0x41, 0x9a),
			pk(2, false, 0x7c, 0x85, 0x88), pk(2, false, 0x7c, 0x45, 0x00), pk(2, true, 0x65, 0x40),
			pk(3, true, 0x65, 0x40), // a later slice first: a lost packet, no start
		}, []bool{false, true, false, false, false}},
		{"in-band sps seen: a bare idr is no start", false, []*rtp.Packet{
			pk(1, false, stapSPS...), pk(1, true, 0x65, 0x88),
			pk(2, true, 0x65, 0x88),
		}, []bool{true, false, false}},
		{"timestamp change without a marker starts an access unit", false, []*rtp.Packet{
			pk(1, false, 0x41, 0x9a), pk(2, false, stapSPS...), pk(2, true, 0x65, 0x88),
		}, []bool{false, true, false}},
		{"vp8 key frame at its start only", true, []*rtp.Packet{
			pk(1, true, 0x10, 0x01), pk(2, false, 0x10, 0x00), pk(2, true, 0x00, 0x00), pk(3, true, 0x10, 0x00),
		}, []bool{false, true, false, true}},
	}
	for _, tc := range cases {
		g := keyGate{h264: !tc.vp8}
		for i, p := range tc.pkts {
			if got := g.step(p); got != tc.want[i] {
				t.Errorf("%s: packet %d: start %v, want %v", tc.name, i, got, tc.want[i])
			}
		}
	}
}

// TestKeyframeGateManyViewers: many viewers subscribe at once to a publisher that answers
// every keyframe request; each viewer's first packet starts an access unit with its parameter
// sets, and its first frame decodes as an IDR. Viewers added while keyframes fly must not have
// their gate opened before their connection can receive. CAMAGENT_GATE_VIEWERS sets how many
// (default 200).
func TestKeyframeGateManyViewers(t *testing.T) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("CAMAGENT_GATE_VIEWERS")); err == nil && v > 0 {
		n = v
	}
	if testing.Short() {
		n = 10
	}
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, url := startTestService(t, Options{MaxPerAddress: n + 1}) // every viewer comes from 127.0.0.1
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	join := func(uid uint32) (*rtc.Client, error) { return joinChannel(ctx, url, api, "crowd", uid) }

	pub, err := join(1)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var requests atomic.Int64
	// The publisher answers every keyframe request, as the agent does.
	publishSynthCamera(ctx, t, pub, func(cam *synth.Camera, pkts []rtcp.Packet) {
		if peer.WantsKeyframe(pkts) {
			requests.Add(1)
			cam.RequestKeyframe()
		}
	})

	type result struct {
		uid   uint32
		err   string
		first *rtp.Packet
		idr   bool
	}
	results := make(chan result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		uid := uint32(100 + i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := result{uid: uid}
			defer func() { results <- r }()
			c, err := join(uid)
			if err != nil {
				r.err = "join: " + err.Error()
				return
			}
			defer c.Close()
			remote, err := c.Subscribe(ctx, 1, rtc.KindVideo)
			if err != nil {
				r.err = "subscribe: " + err.Error()
				return
			}
			sb := samplebuilder.New(256, &codecs.H264Packet{}, 90000)
			for {
				remote.SetReadDeadline(time.Now().Add(10 * time.Second))
				p, _, err := remote.ReadRTP()
				if err != nil {
					r.err = "read video: " + err.Error()
					return
				}
				if r.first == nil {
					r.first = p.Clone()
				}
				sb.Push(p)
				if s := sb.Pop(); s != nil {
					r.idr = h264.IsKeyframe(s.Data)
					return
				}
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	close(results)
	bad := 0
	for r := range results {
		switch {
		case r.err != "":
			t.Errorf("viewer %d: %s", r.uid, r.err)
			bad++
		case h264Start(r.first.Payload) != startSPS:
			t.Errorf("viewer %d: first packet does not start with the parameter sets (NAL header %#x)", r.uid, r.first.Payload[0])
			bad++
		case !r.idr:
			t.Errorf("viewer %d: first frame is not an IDR", r.uid)
			bad++
		}
	}
	t.Logf("%d viewers joined at once in %v; %d keyframe requests reached the publisher; %d viewers started badly",
		n, time.Since(began).Round(time.Millisecond), requests.Load(), bad)
}

// publishSynthCamera publishes the synthetic camera's H.264 from pub until ctx ends; onRTCP,
// when set, sees the RTCP the hub sends the publisher.
func publishSynthCamera(ctx context.Context, t *testing.T, pub *rtc.Client, onRTCP func(*synth.Camera, []rtcp.Packet)) {
	t.Helper()
	publishCamera(ctx, t, pub, synth.CameraOptions{}, onRTCP)
}

// publishCamera is publishSynthCamera with the camera's options; it returns the camera.
func publishCamera(ctx context.Context, t *testing.T, pub *rtc.Client, o synth.CameraOptions, onRTCP func(*synth.Camera, []rtcp.Packet)) *synth.Camera {
	t.Helper()
	cam, err := synth.NewCamera(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cam.Close() })
	track, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: rtc.H264FmtpConstrainedBaseline}, "video", "cam")
	go func() {
		for {
			s, err := cam.ReadSample(ctx)
			if err != nil {
				return
			}
			track.WriteSample(media.Sample{Data: s.Data, Duration: s.Duration})
		}
	}()
	senders, err := pub.Publish(ctx, track)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			pkts, _, err := senders[0].ReadRTCP()
			if err != nil {
				return
			}
			if onRTCP != nil {
				onRTCP(cam, pkts)
			}
		}
	}()
	return cam
}

// joinChannel dials the service at url and joins channel of the demo app as uid.
func joinChannel(ctx context.Context, url string, api *webrtc.API, channel string, uid uint32) (*rtc.Client, error) {
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
	if err != nil {
		return nil, err
	}
	tok, _, _ := token.Mint("demo", testCert, channel, uid, token.RolePublisher, time.Hour, time.Now())
	if _, err := c.Join(ctx, "demo", channel, uid, tok); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
