package sfu

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// noH264API is a pion API that cannot receive H.264 (VP8 and Opus only), as Firefox without
// its OpenH264 plugin.
func noH264API(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range []struct {
		p   webrtc.RTPCodecParameters
		typ webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
	} {
		if err := m.RegisterCodec(c.p, c.typ); err != nil {
			t.Fatal(err)
		}
	}
	var s webrtc.SettingEngine
	s.SetIncludeLoopbackCandidate(true)
	s.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s))
}

// joinWithoutH264 joins uid 2 in room as a subscriber whose WebRTC has no H.264, with its
// subscribe connection (closed when the test ends).
func joinWithoutH264(t *testing.T, url string, api *webrtc.API) (*rawUser, *webrtc.PeerConnection) {
	t.Helper()
	user := dialUser(t, url, api)
	accepted(t, "join", user.join(2, mintPrivs(t, 2, privSubscriber)))
	pc, err := noH264API(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return user, pc
}

// publishCameraAndTone joins uid 1 in room and publishes the synthetic camera's H.264 and an
// Opus track; keyframeRequests counts the PLIs the hub sends it.
func publishCameraAndTone(ctx context.Context, t *testing.T, url string, api *webrtc.API) (keyframeRequests *atomic.Int64) {
	t.Helper()
	pub, err := joinChannel(ctx, url, api, "room", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	keyframeRequests = &atomic.Int64{}
	publishSynthCamera(ctx, t, pub, func(_ *synth.Camera, pkts []rtcp.Packet) {
		if peer.WantsKeyframe(pkts) {
			keyframeRequests.Add(1)
		}
	})
	tone := opusTrack(t, "tone")
	feed(ctx, tone)
	if _, err := pub.Publish(ctx, tone); err != nil {
		t.Fatal(err)
	}
	return keyframeRequests
}

// answerOffers answers each hub offer the user gets with pc, until ctx ends; it returns how
// many offers came and forwards the events.
func (u *rawUser) answerOffers(ctx context.Context, pc *webrtc.PeerConnection, events chan<- rtc.Message) *atomic.Int64 {
	var offers atomic.Int64
	go func() {
		u.ws.SetReadDeadline(time.Time{}) // until the test closes the socket
		for ctx.Err() == nil {
			_, b, err := u.ws.ReadMessage()
			if err != nil {
				return
			}
			var m rtc.Message
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			if m.Type != rtc.TypeOffer {
				select {
				case events <- m:
				default:
				}
				continue
			}
			offers.Add(1)
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
				u.t.Errorf("apply the hub's offer: %v", err)
				return
			}
			ans, err := peer.Answer(context.Background(), pc, peer.Gathering{})
			if err != nil {
				u.t.Errorf("answer: %v", err)
				return
			}
			out, _ := json.Marshal(rtc.Message{Type: rtc.TypeAnswer, SDP: ans})
			u.write(out)
		}
	}()
	return &offers
}

// send writes a request without waiting for its reply (answerOffers reads the socket).
func (u *rawUser) send(m rtc.Message) {
	u.id++
	m.ID = u.id
	b, _ := json.Marshal(m)
	if err := u.write(b); err != nil {
		u.t.Fatalf("write %s: %v", m.Type, err)
	}
}

// TestUnplayableCodecEndsOnlyItsSubscription: a subscriber whose WebRTC has no H.264 subscribes
// to a device's H.264 video and Opus audio. The video subscription alone fails, with
// subscribe-failed / CODEC_NOT_SUPPORTED naming the codec; the connection comes up and the
// audio plays; the hub does not restart ICE or offer again and again.
func TestUnplayableCodecEndsOnlyItsSubscription(t *testing.T) {
	if testing.Short() {
		t.Skip("watches for seconds that no restart or offer follows: not in -short")
	}
	svc, url := newTestService(t)
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishCameraAndTone(ctx, t, url, api)

	user, pc := joinWithoutH264(t, url, api)
	audio := make(chan *webrtc.TrackRemote, 2)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { audio <- tr })
	events := make(chan rtc.Message, 32)
	offers := user.answerOffers(ctx, pc, events)
	user.send(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindVideo})
	user.send(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindAudio})

	var failed *rtc.Message
	var replies int
	for failed == nil || replies < 2 {
		select {
		case m := <-events:
			switch {
			case m.Type == rtc.TypeReply:
				accepted(t, "subscribe", m)
				replies++
			case m.Event == rtc.EventSubscribeFailed:
				failed = &m
			}
		case <-ctx.Done():
			t.Fatalf("no subscribe-failed event (replies %d)", replies)
		}
	}
	if failed.Kind != rtc.KindVideo || *failed.UID != 1 || failed.Error == nil ||
		failed.Error.Code != rtc.CodeCodecNotSupported || failed.Codec != webrtc.MimeTypeH264 {
		t.Fatalf("subscribe-failed %+v (error %+v), want uid 1's video, %s, codec %s", failed, failed.Error, rtc.CodeCodecNotSupported, webrtc.MimeTypeH264)
	}
	t.Logf("refused: %s", failed.Error.Message)
	var remote *webrtc.TrackRemote
	select {
	case remote = <-audio:
	case <-ctx.Done():
		t.Fatal("the audio never arrived")
	}
	if remote.Kind() != webrtc.RTPCodecTypeAudio {
		t.Fatalf("received %s, want only audio", remote.Kind())
	}
	if n := packetsIn(counter(t, remote), 2*time.Second); n < 20 {
		t.Fatalf("the audio plays %d packets in 2 s", n)
	}
	if st := pc.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
		t.Fatalf("the subscribe connection is %s", st)
	}
	// Settled: no offer after the one that set the refused transceiver inactive, no restart.
	before := offers.Load()
	time.Sleep(1500 * time.Millisecond)
	if after := offers.Load(); after != before || before > 3 {
		t.Errorf("offers went from %d to %d: the hub keeps renegotiating", before, after)
	}
	if r := svc.Stats().ICERestarts; r != 0 {
		t.Errorf("%d ICE restarts", r)
	}
	sess := svc.channels[channelKey{"demo", "room"}].lookup(2)
	sess.mu.Lock()
	_, video := sess.subs[subKey{1, rtc.KindVideo}]
	sess.mu.Unlock()
	if video {
		t.Error("the refused video subscription is still there")
	}
}

// TestDataChannelSubscription: a video subscription over a data channel gets the publisher's
// H.264 access units, framed (docs/protocol.md): a keyframe first, numbered without gaps, each
// a whole Annex B unit; a "keyframe" message reaches the publisher as a PLI; unsubscribing
// closes the channel.
func TestDataChannelSubscription(t *testing.T) {
	_, url := newTestService(t)
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plis := publishCameraAndTone(ctx, t, url, api)

	user, pc := joinWithoutH264(t, url, api)
	type unit struct {
		flags  byte
		number uint32
		size   int
		data   []byte
	}
	units := make(chan unit, 256)
	channels := make(chan *webrtc.DataChannel, 1)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		channels <- dc
		var cur []byte
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			b := m.Data
			if len(b) < dcHeader || b[0] != dcVersion {
				t.Errorf("a message of %d bytes that is not a fragment", len(b))
				return
			}
			if b[1]&dcFlagFirst != 0 {
				cur = nil
			}
			cur = append(cur, b[dcHeader:]...)
			if b[1]&dcFlagLast != 0 {
				units <- unit{b[1], binary.BigEndian.Uint32(b[2:]), len(cur), append([]byte(nil), cur...)}
			}
		})
	})
	events := make(chan rtc.Message, 32)
	user.answerOffers(ctx, pc, events)
	user.send(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindVideo, Transport: rtc.TransportDataChannel})
	user.send(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindAudio})
	var label string
	for replies := 0; replies < 2; {
		select {
		case m := <-events:
			if m.Type == rtc.TypeReply {
				accepted(t, "subscribe", m)
				if m.Label != "" {
					label = m.Label
				}
				replies++
			}
		case <-ctx.Done():
			t.Fatal("no replies")
		}
	}
	var dc *webrtc.DataChannel
	select {
	case dc = <-channels:
	case <-ctx.Done():
		t.Fatal("no data channel")
	}
	if dc.Label() != label || label != dcLabel(1) {
		t.Fatalf("data channel %q, reply label %q, want %q", dc.Label(), label, dcLabel(1))
	}
	var got []unit
	for len(got) < 40 {
		select {
		case u := <-units:
			got = append(got, u)
		case <-ctx.Done():
			t.Fatalf("%d access units", len(got))
		}
	}
	if got[0].flags&dcFlagKey == 0 || !h264.IsKeyframe(got[0].data) {
		t.Errorf("the first access unit is not a keyframe (flags %#x)", got[0].flags)
	}
	for i, u := range got {
		if i > 0 && u.number != got[i-1].number+1 {
			t.Errorf("unit %d numbered %d after %d", i, u.number, got[i-1].number)
		}
		if len(u.data) < 5 || u.data[0] != 0 || u.data[1] != 0 || (u.data[2] != 1 && u.data[3] != 1) {
			t.Errorf("unit %d does not start with an Annex B start code: % x", i, u.data[:min(8, len(u.data))])
		}
	}
	t.Logf("%d access units, first %d bytes (keyframe), then %d, %d, … bytes", len(got), got[0].size, got[1].size, got[2].size)

	before := plis.Load()
	if err := dc.SendText(dcKeyframeRequest); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for plis.Load() == before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if plis.Load() == before {
		t.Error("a keyframe request on the data channel did not reach the publisher")
	}

	// A subscriber flooding keyframe requests and junk reaches the publisher at most once per
	// keyframeGap, and its feed goes on.
	time.Sleep(keyframeGap)
	before = plis.Load()
	flood := time.Now()
	for i := 0; i < 300; i++ {
		dc.SendText(dcKeyframeRequest)
		dc.Send([]byte{0xff, 0x00, 0x13})
	}
	time.Sleep(300 * time.Millisecond)
	allowed := int64(time.Since(flood)/keyframeGap) + 2
	if n := plis.Load() - before; n > allowed {
		t.Errorf("300 keyframe requests in %v made %d PLIs (at most %d allowed)", time.Since(flood).Round(time.Millisecond), n, allowed)
	}
	for len(units) > 0 {
		<-units
	}
	select {
	case <-units:
	case <-time.After(3 * time.Second):
		t.Error("the feed stopped after the flood")
	}

	closed := make(chan struct{})
	dc.OnClose(func() { close(closed) })
	user.send(rtc.Message{Type: rtc.TypeUnsubscribe, UID: ptr(uint32(1)), Kind: rtc.KindVideo})
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("unsubscribing did not close the data channel")
	}
}

// TestAnswerCodecs: the codecs an answer's m-lines accept, as the refusal reads them, against
// an SDP from pion: both mids, H.264 with its packetization mode, and none for a rejected m-line.
func TestAnswerCodecs(t *testing.T) {
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	sdpText := offerSDP(t, api)
	got, err := answerCodecs(sdpText)
	if err != nil {
		t.Fatal(err)
	}
	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, SDPFmtpLine: "packetization-mode=1;profile-level-id=42e01f"}
	accepts := func(mid string, c webrtc.RTPCodecCapability) bool {
		for _, r := range got[mid] {
			if codecAccepts(r, c) {
				return true
			}
		}
		return false
	}
	if len(got) != 2 || !accepts("0", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}) || !accepts("1", h264) {
		t.Fatalf("answerCodecs: %v", got)
	}
	if accepts("1", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, SDPFmtpLine: "packetization-mode=2"}) {
		t.Error("packetization-mode 2 accepted")
	}
	rejected := strings.Replace(sdpText, "m=video 9 ", "m=video 0 ", 1)
	if got, _ = answerCodecs(rejected); len(got["1"]) != 0 {
		t.Errorf("a rejected m-line accepts %v", got["1"])
	}
}

// FuzzAnswerCodecs: a subscriber's answer is untrusted; reading it never panics.
func FuzzAnswerCodecs(f *testing.F) {
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	f.Add(offerSDP(f, api))
	f.Add("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96\r\na=fmtp:96\r\n")
	f.Fuzz(func(t *testing.T, answer string) {
		got, err := answerCodecs(answer)
		if err == nil {
			for _, codecs := range got {
				for _, c := range codecs {
					codecAccepts(c, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264})
				}
			}
		}
	})
}

// TestDataChannelRefusals: a data-channel subscription needs the subscribe privilege and is for
// H.264 video only; a refused one opens no channel and adds no subscriber to the track.
func TestDataChannelRefusals(t *testing.T) {
	svc, url := newTestService(t)
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishCameraAndTone(ctx, t, url, api)
	video := svc.channels[channelKey{"demo", "room"}].lookup(1).publishedTrack(rtc.KindVideo)
	if video == nil {
		t.Fatal("the publisher's video is not published")
	}

	joinOnly := dialUser(t, url, api)
	accepted(t, "join", joinOnly.join(3, mintPrivs(t, 3, []string{token.PrivJoin})))
	refusedWith(t, "subscribe without the privilege", joinOnly.request(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)),
		Kind: rtc.KindVideo, Transport: rtc.TransportDataChannel}), rtc.CodeNoPrivilege)

	user := dialUser(t, url, api)
	accepted(t, "join", user.join(2, mintPrivs(t, 2, privSubscriber)))
	for _, m := range []rtc.Message{
		{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindAudio, Transport: rtc.TransportDataChannel},
		{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindVideo, Transport: "carrier-pigeon"},
	} {
		refusedWith(t, "subscribe over "+m.Transport+" to "+m.Kind, user.request(m), rtc.CodeInvalidParams)
	}
	if n := len(video.subscribers()); n != 0 {
		t.Errorf("the video has %d subscribers after refusals", n)
	}
	for _, uid := range []uint32{2, 3} {
		sess := svc.channels[channelKey{"demo", "room"}].lookup(uid)
		sess.mu.Lock()
		subs, pc := len(sess.subs), sess.sub
		sess.mu.Unlock()
		if subs != 0 || pc != nil {
			t.Errorf("uid %d: %d subscriptions, subscribe connection %v after refusals", uid, subs, pc != nil)
		}
	}
}
