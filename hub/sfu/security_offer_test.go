package sfu

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// TestPublishFirstDirectionWins: pion reads an m-line's first direction attribute; an offer
// "a=sendonly" then "a=recvonly" from a subscriber-only token is refused, its audio reaches
// nobody, and the same session can then do what its token allows.
func TestPublishFirstDirectionWins(t *testing.T) {
	svc, url, api := securityHub(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A legitimate publisher and a watcher that receives its audio all along.
	pub := joinAs(ctx, t, url, api, 1, mintPrivs(t, 1, privPublisher))
	tone := opusTrack(t, "p")
	feed(ctx, tone)
	if _, err := pub.Publish(ctx, tone); err != nil {
		t.Fatal(err)
	}
	watcher := joinAs(ctx, t, url, api, 3, mintPrivs(t, 3, privSubscriber))
	remote, err := watcher.Subscribe(ctx, 1, rtc.KindAudio)
	if err != nil {
		t.Fatal(err)
	}
	legit := counter(t, remote)

	attacker := dialUser(t, url, api)
	accepted(t, "attacker join", attacker.join(2, mintPrivs(t, 2, privSubscriber)))
	pc, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer pc.Close()
	voice := opusTrack(t, "a")
	feed(ctx, voice)
	pc.AddTransceiverFromTrack(voice, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	bad := offer(t, pc, func(s string) string { return addDirection(s, "audio", "sendonly", "recvonly") })
	refusedWith(t, "sendonly+recvonly audio", attacker.request(rtc.Message{Type: rtc.TypePublish, SDP: bad}), rtc.CodeNoPrivilege)
	// A session-level direction does not help either, nor a rejected port.
	sessionLevel := strings.Replace(strings.Replace(bad, "a=sendonly\r\na=recvonly\r\n", "", 1), "t=0 0\r\n", "t=0 0\r\na=sendonly\r\n", 1)
	refusedWith(t, "session-level sendonly", attacker.request(rtc.Message{Type: rtc.TypePublish, SDP: sessionLevel}), rtc.CodeNoPrivilege)

	// Nothing of the attacker's reaches anyone: the watcher cannot subscribe to it, and for
	// two seconds the only media the hub forwards is the publisher's, which the watcher gets.
	if r := attacker.request(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(2)), Kind: rtc.KindAudio}); r.Error == nil || r.Error.Code != rtc.CodeNoSuchUser {
		t.Fatalf("self-subscribe: %+v", r)
	}
	if _, err := watcher.Subscribe(ctx, 2, rtc.KindAudio); err == nil || !strings.Contains(err.Error(), rtc.CodeNotPublished) {
		t.Fatalf("subscribing to the attacker: %v, want %s", err, rtc.CodeNotPublished)
	}
	fwd := svc.Stats().ForwardedPackets
	got := packetsIn(legit, 2*time.Second)
	if got == 0 {
		t.Fatal("the watcher stopped receiving the legitimate publisher")
	}
	if extra := int64(svc.Stats().ForwardedPackets-fwd) - got; extra > 5 {
		t.Errorf("the hub forwarded %d packets beyond the publisher's %d", extra, got)
	}
	for _, u := range svc.channels[channelKey{"demo", "room"}].snapshot(0) {
		if u.UID == 2 && (u.Audio || u.Video) {
			t.Errorf("the attacker publishes: %+v", u)
		}
	}
	if svc.Stats().RefusedMedia < 2 {
		t.Errorf("RefusedMedia %d, want 2", svc.Stats().RefusedMedia)
	}
	// The same session may still subscribe (its token allows it).
	if r := attacker.request(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindAudio}); r.OK == nil || !*r.OK {
		t.Fatalf("a valid subscribe after the refusal: %v", r.Error)
	}
}

// TestRefusedOfferLeavesSessionUsable: a refused publish offer never wedges the session's
// publishing. Refused before it is applied (the SDP check), the publish connection goes on as
// it was; refused after it was applied (the check on pion's transceivers, with the SDP check
// off), the connection is reset and the next publish, on a new one, works. Audio the client
// sends anyway is never forwarded.
func TestRefusedOfferLeavesSessionUsable(t *testing.T) {
	svc, url, api := securityHub(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	watcher := joinAs(ctx, t, url, api, 3, mintPrivs(t, 3, privSubscriber))
	user := dialUser(t, url, api)
	accepted(t, "join", user.join(2, mintPrivs(t, 2, privVideoOnly)))
	voice, video := opusTrack(t, "a"), vp8Track(t, "v")
	feed(ctx, voice, video)

	// A first offer refused: the next, on a new client connection, works.
	first, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer first.Close()
	first.AddTransceiverFromTrack(voice, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	bad := offer(t, first, func(s string) string { return addDirection(s, "audio", "sendonly", "recvonly") })
	refusedWith(t, "first offer with audio", user.request(rtc.Message{Type: rtc.TypePublish, SDP: bad}), rtc.CodeNoPrivilege)

	// publishVideo publishes video on a new client connection and returns it, and the
	// watcher's packet count of it.
	publishVideo := func() (*webrtc.PeerConnection, *atomic.Int64) {
		t.Helper()
		pc, _ := api.NewPeerConnection(webrtc.Configuration{})
		t.Cleanup(func() { pc.Close() })
		pc.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		r := user.request(rtc.Message{Type: rtc.TypePublish, SDP: offer(t, pc, func(s string) string { return s })})
		accepted(t, "video publish", r)
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.SDP}); err != nil {
			t.Fatal(err)
		}
		for m := user.next(); m.Event != rtc.EventPublished; m = user.next() {
		}
		remote, err := watcher.Subscribe(ctx, 2, rtc.KindVideo)
		if err != nil {
			t.Fatal(err)
		}
		return pc, counter(t, remote)
	}
	pc, frames := publishVideo()

	// Renegotiating to add audio the token does not allow (sendonly, then recvonly).
	pc.AddTransceiverFromTrack(voice, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	reneg := offer(t, pc, func(s string) string { return addDirection(s, "audio", "sendonly", "recvonly") })
	refusedWith(t, "renegotiation with audio", user.request(rtc.Message{Type: rtc.TypePublish, SDP: reneg}), rtc.CodeNoPrivilege)
	if packetsIn(frames, time.Second) == 0 {
		t.Fatal("the video stopped after an offer refused before it was applied")
	}
	if _, err := watcher.Subscribe(ctx, 2, rtc.KindAudio); err == nil || !strings.Contains(err.Error(), rtc.CodeNotPublished) {
		t.Fatalf("subscribing to the refused audio: %v, want %s", err, rtc.CodeNotPublished)
	}

	// The same offer, checked only once applied: refused, and the connection reset.
	svc.skipOfferPrecheck.Store(true)
	r := user.request(rtc.Message{Type: rtc.TypePublish, SDP: reneg})
	refusedWith(t, "renegotiation with audio, checked once applied", r, rtc.CodeNoPrivilege)
	if !strings.Contains(r.Error.Message, "reset") {
		t.Errorf("the refusal does not say the connection was reset: %s", r.Error.Message)
	}
	deadline := time.After(5 * time.Second)
	for gone := false; !gone; {
		select {
		case m := <-watcher.Events():
			gone = m.Event == rtc.EventUserUnpublished && m.Kind == rtc.KindVideo
		case <-deadline:
			t.Fatal("no user-unpublished after the reset")
		}
	}
	// The old client connection still sends audio and video: nothing of it reaches anyone,
	// and a new publish works.
	_, frames = publishVideo()
	if packetsIn(frames, 2*time.Second) == 0 {
		t.Fatal("no video after publishing again")
	}
	if _, err := watcher.Subscribe(ctx, 2, rtc.KindAudio); err == nil || !strings.Contains(err.Error(), rtc.CodeNotPublished) {
		t.Fatalf("subscribing to the refused audio: %v, want %s", err, rtc.CodeNotPublished)
	}
	if got := svc.Stats().RefusedMedia; got < 3 {
		t.Errorf("RefusedMedia %d, want at least 3", got)
	}
}

// TestSubscribeConnectionCarriesNothingIn: a client that answers the hub's offer sendrecv and
// sends RTP on its subscribe connection gets nothing received or forwarded; it still watches.
func TestSubscribeConnectionCarriesNothingIn(t *testing.T) {
	svc, url, api := securityHub(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := joinAs(ctx, t, url, api, 1, mintPrivs(t, 1, privPublisher))
	tone := opusTrack(t, "p")
	feed(ctx, tone)
	if _, err := pub.Publish(ctx, tone); err != nil {
		t.Fatal(err)
	}

	user := dialUser(t, url, api)
	accepted(t, "join", user.join(2, mintPrivs(t, 2, privSubscriber)))
	accepted(t, "subscribe", user.request(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(1)), Kind: rtc.KindAudio}))
	off := <-user.offers
	pc, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer pc.Close()
	received := make(chan *webrtc.TrackRemote, 1)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { received <- tr })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: off.SDP}); err != nil {
		t.Fatal(err)
	}
	voice := opusTrack(t, "a")
	feed(ctx, voice)
	if _, err := pc.AddTrack(voice); err != nil { // turns the transceiver sendrecv
		t.Fatal(err)
	}
	ans, err := peer.Answer(ctx, pc, peer.Gathering{})
	if err != nil {
		t.Fatal(err)
	}
	answer := strings.Replace(ans, "a=recvonly", "a=sendrecv", -1)
	if !strings.Contains(answer, "a=sendrecv") {
		t.Fatal("the answer does not say sendrecv")
	}
	b, _ := json.Marshal(rtc.Message{Type: rtc.TypeAnswer, SDP: answer})
	user.ws.WriteMessage(websocket.TextMessage, b)
	var remote *webrtc.TrackRemote
	select {
	case remote = <-received:
	case <-ctx.Done():
		t.Fatal("the subscriber got no media")
	}
	watching := counter(t, remote)
	if n := packetsIn(watching, 2*time.Second); n == 0 {
		t.Fatal("the subscriber receives nothing")
	}
	sess := svc.channels[channelKey{"demo", "room"}].lookup(2)
	sess.mu.Lock()
	sub := sess.sub
	sess.mu.Unlock()
	for _, tr := range sub.GetTransceivers() {
		if receives(tr) || (tr.Receiver() != nil && len(tr.Receiver().Tracks()) > 0 && tr.Receiver().Track().SSRC() != 0) {
			t.Errorf("the hub receives %s on a subscribe connection", tr.Kind())
		}
	}
	if a, v := sess.publishes(); a || v {
		t.Error("the subscriber publishes")
	}
	if svc.Stats().RefusedMedia == 0 {
		t.Error("the sendrecv answer was not counted")
	}
}
