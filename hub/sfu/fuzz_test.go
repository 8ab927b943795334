package sfu

import (
	"context"
	"strings"
	"testing"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The keyframe parsers read publishers' RTP payloads: any bytes, never a panic.
func FuzzH264KeyframeStart(f *testing.F) {
	for _, p := range [][]byte{{0x65, 0x88}, {0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, {0x78, 0xff, 0xff}, {0x7c, 0x85}, {0x18}} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		h264Start(p)
		g := keyGate{h264: true}
		for i := 0; i+4 <= len(p); i += 4 { // the gate over packets cut from the input
			g.step(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(p[i]), Marker: p[i]&1 == 1}, Payload: p[i:]})
		}
	})
}

func FuzzVP8KeyframeStart(f *testing.F) {
	for _, p := range [][]byte{{0x10, 0x00}, {0x90, 0x80, 0x81, 0x23, 0x00}, {0x90, 0xf0}, {0x90, 0x80}} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) { vp8KeyframeStart(p) })
}

// sdpVariants are publish offers that try to send while looking as if they did not.
func sdpVariants(t testing.TB, api *webrtc.API) []string {
	base := offerSDP(t, api)
	noDir := strings.Replace(base, "a=sendonly\r\n", "", 1)
	return []string{
		base,
		strings.Replace(base, "a=sendonly\r\n", "a=sendonly\r\na=recvonly\r\n", 1),
		strings.Replace(base, "a=sendonly\r\n", "a=sendrecv\r\na=inactive\r\n", -1),
		noDir,
		strings.Replace(noDir, "t=0 0\r\n", "t=0 0\r\na=recvonly\r\n", 1),
		strings.Replace(noDir, "t=0 0\r\n", "t=0 0\r\na=sendonly\r\n", 1),
		strings.Replace(base, "m=audio 9", "m=audio 0", 1),
		strings.Replace(base, "a=sendonly\r\n", "a=recvonly\r\n", -1),
		strings.Replace(base, "a=sendonly\r\n", "a=inactive\r\na=sendonly\r\n", -1),
	}
}

// TestSendKindsMatchesPion: for each variant, the SDP check says a kind is sent whenever
// pion, applying the offer, would receive it.
func TestSendKindsMatchesPion(t *testing.T) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, offer := range sdpVariants(t, api) {
		kinds, err := sendKinds(offer)
		if err != nil {
			t.Fatalf("variant %d: %v", i, err)
		}
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			t.Fatalf("variant %d: pion refuses it: %v", i, err)
		}
		recv := receivingKinds(pc)
		pc.Close()
		for kind := range recv {
			if !kinds[kind] {
				t.Errorf("variant %d: pion receives %s, the check says it is not sent:\n%s", i, kind, offer)
			}
		}
		if i == 1 && !recv[rtc.KindAudio] {
			t.Errorf("pion no longer reads the first direction: the attack variant is not received")
		}
	}
}

// FuzzSendKinds: the SDP direction check reads any text without panicking.
func FuzzSendKinds(f *testing.F) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range sdpVariants(f, api) {
		f.Add(v)
	}
	f.Add("v=0\r\n")
	f.Fuzz(func(t *testing.T, offer string) { sendKinds(offer) })
}

func offerSDP(t testing.TB, api *webrtc.API) string {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// TestMessageSizeBudget: the largest legitimate messages a client sends fit in
// rtc.MaxMessageBytes: a publish offer (audio and video, every loopback candidate) and the
// answer to a subscribe offer carrying rtc.MaxSubscriptions tracks.
func TestMessageSizeBudget(t *testing.T) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	hub, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer hub.Close()
	for i := range rtc.MaxSubscriptions {
		var tr *webrtc.TrackLocalStaticSample
		if i%2 == 0 {
			tr = opusTrack(t, "a")
		} else {
			tr = vp8Track(t, "v")
		}
		if _, err := hub.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	off := offer(t, hub, func(s string) string { return s })
	client, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer client.Close()
	if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: off}); err != nil {
		t.Fatal(err)
	}
	ans, err := peer.Answer(context.Background(), client, peer.Gathering{})
	if err != nil {
		t.Fatal(err)
	}
	answer := len(ans)

	pub, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer pub.Close()
	pub.AddTransceiverFromTrack(opusTrack(t, "a"), webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	pub.AddTransceiverFromTrack(vp8Track(t, "v"), webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	publish := len(offer(t, pub, func(s string) string { return s }))
	t.Logf("publish offer %d bytes; answer for %d tracks %d bytes (%d per track); limit %d",
		publish, rtc.MaxSubscriptions, answer, answer/rtc.MaxSubscriptions, rtc.MaxMessageBytes)
	// JSON escapes \r\n: allow for it, and keep half the limit free for browsers' longer SDP.
	if escaped := answer + 2*strings.Count(client.LocalDescription().SDP, "\n"); 2*escaped > rtc.MaxMessageBytes {
		t.Errorf("an answer for %d tracks takes %d bytes of JSON, over half of %d", rtc.MaxSubscriptions, escaped, rtc.MaxMessageBytes)
	}
}
