package sfu

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// Attacks on the channel service by clients that reach it: each is refused, leaves nothing
// behind (no media forwarded, no session kicked), and a legitimate user works meanwhile.

var (
	privSubscriber = []string{token.PrivJoin, token.PrivSubscribe}
	privPublisher  = []string{token.PrivJoin, token.PrivSubscribe, token.PrivPublishAudio, token.PrivPublishVideo}
	privVideoOnly  = []string{token.PrivJoin, token.PrivSubscribe, token.PrivPublishVideo}
)

// securityHub runs a Service (with o's limits) for one test on loopback.
func securityHub(t *testing.T, o Options) (*Service, string, *webrtc.API) {
	t.Helper()
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	o.API = api
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	svc, url := startTestService(t, o)
	return svc, url, api
}

func mintPrivs(t *testing.T, uid uint32, privs []string) string {
	t.Helper()
	tok, _, err := token.MintPrivileges("demo", testCert, "room", uid, privs, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signed signs claims by hand (as an old or careless backend might).
func signed(t *testing.T, c token.Claims, cert string) string {
	t.Helper()
	if c.AppID == "" {
		c.AppID, c.Channel = "demo", "room"
	}
	if c.ExpiresAt == 0 {
		c.IssuedAt, c.ExpiresAt = time.Now().Unix(), time.Now().Add(time.Hour).Unix()
	}
	tok, err := token.Sign(c, cert)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func joinAs(ctx context.Context, t *testing.T, url string, api *webrtc.API, uid uint32, tok string) *rtc.Client {
	t.Helper()
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Join(ctx, "demo", "room", uid, tok); err != nil {
		t.Fatalf("join as %d: %v", uid, err)
	}
	return c
}

func opusTrack(t *testing.T, id string) *webrtc.TrackLocalStaticSample {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func vp8Track(t *testing.T, id string) *webrtc.TrackLocalStaticSample {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// feed writes a sample to each track every 20 ms until ctx ends (VP8: always a key frame).
func feed(ctx context.Context, tracks ...*webrtc.TrackLocalStaticSample) {
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				for _, tr := range tracks {
					data := []byte{0xf8, 0xff, 0xfe}
					if tr.Kind() == webrtc.RTPCodecTypeVideo {
						data = []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00}
					}
					tr.WriteSample(media.Sample{Data: data, Duration: 20 * time.Millisecond})
				}
			}
		}
	}()
}

// counter counts the RTP packets of a subscribed track.
func counter(t *testing.T, tr *webrtc.TrackRemote) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	go func() {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return &n
}

// packetsIn returns how many packets n counts during d.
func packetsIn(n *atomic.Int64, d time.Duration) int64 {
	before := n.Load()
	time.Sleep(d)
	return n.Load() - before
}

// rawUser speaks the protocol by hand over a WebSocket, with its own pion connections.
type rawUser struct {
	t      *testing.T
	ws     *websocket.Conn
	api    *webrtc.API
	id     uint64
	offers chan rtc.Message
	wmu    sync.Mutex // gorilla allows one writer at a time: send and answerOffers write
}

// write sends one text message, one writer at a time.
func (u *rawUser) write(b []byte) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	return u.ws.WriteMessage(websocket.TextMessage, b)
}

func dialUser(t *testing.T, url string, api *webrtc.API) *rawUser {
	return &rawUser{t: t, ws: dialRaw(t, url), api: api, offers: make(chan rtc.Message, 8)}
}

// request sends m and returns its reply; hub offers met on the way are queued.
func (u *rawUser) request(m rtc.Message) rtc.Message {
	u.t.Helper()
	u.id++
	m.ID = u.id
	b, _ := json.Marshal(m)
	if err := u.write(b); err != nil {
		u.t.Fatalf("write %s: %v", m.Type, err)
	}
	for {
		r := u.next()
		if r.Type == rtc.TypeReply && r.ID == m.ID {
			return r
		}
	}
}

func (u *rawUser) next() rtc.Message {
	u.t.Helper()
	u.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := u.ws.ReadMessage()
	if err != nil {
		u.t.Fatalf("read: %v", err)
	}
	var r rtc.Message
	if err := json.Unmarshal(b, &r); err != nil {
		u.t.Fatalf("hub sent %q", b)
	}
	if r.Type == rtc.TypeOffer {
		u.offers <- r
	}
	return r
}

func (u *rawUser) join(uid uint32, tok string) rtc.Message {
	u.t.Helper()
	m := rtc.Message{Type: rtc.TypeJoin, AppID: "demo", Channel: "room", Token: tok}
	if uid != 0 {
		m.UID = &uid
	}
	return u.request(m)
}

// offer makes pc's offer (gathered), edited by edit.
func offer(t *testing.T, pc *webrtc.PeerConnection, edit func(string) string) string {
	t.Helper()
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return edit(pc.LocalDescription().SDP)
}

// addDirection puts attr right after the first direction attribute of the m-line of kind.
func addDirection(sdpText, kind, first, attr string) string {
	i := strings.Index(sdpText, "m="+kind+" ")
	j := strings.Index(sdpText[i:], "a="+first+"\r\n") + i + len("a="+first+"\r\n")
	return sdpText[:j] + "a=" + attr + "\r\n" + sdpText[j:]
}

func refusedWith(t *testing.T, what string, r rtc.Message, code string) {
	t.Helper()
	if r.OK == nil || *r.OK || r.Error == nil || r.Error.Code != code {
		t.Fatalf("%s: reply %+v (error %v), want %s", what, r, r.Error, code)
	}
}

func accepted(t *testing.T, what string, r rtc.Message) {
	t.Helper()
	if r.OK == nil || !*r.OK {
		t.Fatalf("%s refused: %v", what, r.Error)
	}
}

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

func ptr[T any](v T) *T { return &v }

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
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-gathered
	answer := strings.Replace(pc.LocalDescription().SDP, "a=recvonly", "a=sendrecv", -1)
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

// TestWildcardCannotTakeOver: a wildcard-uid token cannot join with a uid a live session
// holds (nor publish); the live session is untouched and its watcher keeps receiving. A token
// naming the uid still replaces it.
func TestWildcardCannotTakeOver(t *testing.T) {
	svc, url, api := securityHub(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	device := joinAs(ctx, t, url, api, 7, mintPrivs(t, 7, privPublisher))
	tone := opusTrack(t, "d")
	feed(ctx, tone)
	if _, err := device.Publish(ctx, tone); err != nil {
		t.Fatal(err)
	}
	watcher := joinAs(ctx, t, url, api, 1, mintPrivs(t, 1, privSubscriber))
	remote, err := watcher.Subscribe(ctx, 7, rtc.KindAudio)
	if err != nil {
		t.Fatal(err)
	}
	n := counter(t, remote)

	wildcard := mintPrivs(t, 0, privSubscriber)
	oldBackend := signed(t, token.Claims{UID: 0, Privileges: privPublisher}, testCert) // wildcard publisher, signed by hand
	for _, tok := range []string{wildcard, oldBackend} {
		refusedWith(t, "wildcard join as a live uid", dialUser(t, url, api).join(7, tok), rtc.CodeUIDInUse)
	}
	if packetsIn(n, 1500*time.Millisecond) == 0 {
		t.Fatal("the device's watcher stopped receiving after the attempts")
	}
	select {
	case <-device.Done():
		t.Fatalf("the device was disconnected: %v", device.Err())
	default:
	}
	// A wildcard token joins with a free uid, or gets one; it cannot publish.
	free := dialUser(t, url, api)
	accepted(t, "wildcard join with a free uid", free.join(99, oldBackend))
	pc, _ := api.NewPeerConnection(webrtc.Configuration{})
	defer pc.Close()
	pc.AddTransceiverFromTrack(opusTrack(t, "w"), webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	refusedWith(t, "wildcard publish", free.request(rtc.Message{Type: rtc.TypePublish, SDP: offer(t, pc, func(s string) string { return s })}), rtc.CodeNoPrivilege)
	r := dialUser(t, url, api).join(0, wildcard)
	accepted(t, "wildcard join without uid", r)
	if r.UID == nil || *r.UID == 7 || *r.UID == 1 || *r.UID == 99 {
		t.Fatalf("assigned uid %v", r.UID)
	}
	if svc.Stats().Refused != 2 {
		t.Errorf("Refused %d, want 2", svc.Stats().Refused)
	}

	// The device itself (a token naming uid 7) still takes its uid over, as after a restart.
	again := joinAs(ctx, t, url, api, 7, mintPrivs(t, 7, privPublisher))
	select {
	case <-device.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a token naming the uid did not replace the old session")
	}
	select {
	case <-again.Done():
		t.Fatal("the new session ended")
	default:
	}
}

// TestJoinDeadline: a socket that does not join in time is closed and counted; one that
// joined stays.
func TestJoinDeadline(t *testing.T) {
	svc, url, _ := securityHub(t, Options{JoinDeadline: 300 * time.Millisecond})
	idle := dialRaw(t, url)
	joined := dialRaw(t, url)
	tok := mintPrivs(t, 4, privSubscriber)
	joined.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","id":1,"appId":"demo","channel":"room","uid":4,"token":"`+tok+`"}`))
	if r := readReply(t, joined); r.OK == nil || !*r.OK {
		t.Fatalf("join: %+v", r)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := idle.ReadMessage(); err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatal("the idle socket is still open after the deadline")
			}
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	joined.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":2}`))
	if r := readReply(t, joined); r.OK == nil || !*r.OK {
		t.Fatalf("ping after the deadline: %+v", r)
	}
	if got := svc.Stats().JoinTimeouts; got != 1 {
		t.Errorf("JoinTimeouts %d, want 1", got)
	}
}

// TestConnectionCaps: beyond the per-address cap the next socket is refused with 429 before
// the upgrade, beyond the total cap with 503; the open ones keep working, and a closed one
// frees its place.
func TestConnectionCaps(t *testing.T) {
	svc, url, _ := securityHub(t, Options{MaxPerAddress: 3})
	var open []*websocket.Conn
	for range 3 {
		open = append(open, dialRaw(t, url))
	}
	refused := func(url string, want int) {
		t.Helper()
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			c.Close()
			t.Fatal("a connection over the cap was upgraded")
		}
		if resp == nil || resp.StatusCode != want {
			t.Fatalf("over the cap: %v %v, want HTTP %d", resp, err, want)
		}
	}
	refused(url, http.StatusTooManyRequests)
	for i, c := range open {
		c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":1}`))
		if r := readReply(t, c); r.OK == nil || !*r.OK {
			t.Fatalf("socket %d after the refusal: %+v", i, r)
		}
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed socket did not free its place: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := svc.Stats().RefusedConnections; got < 1 {
		t.Errorf("RefusedConnections %d", got)
	}

	_, url2, _ := securityHub(t, Options{MaxSessions: 2})
	dialRaw(t, url2)
	dialRaw(t, url2)
	refused(url2, http.StatusServiceUnavailable)
}

// lineCounter is a slog handler that counts the lines written.
type lineCounter struct{ n *atomic.Int64 }

func (h lineCounter) Enabled(context.Context, slog.Level) bool  { return true }
func (h lineCounter) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h lineCounter) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h lineCounter) WithGroup(string) slog.Handler             { return h }

// TestFloodIsLimited: a socket flooding garbage and requests gets RATE_LIMITED, is closed
// after a sustained flood, and writes a bounded number of log lines; an oversized frame closes
// its socket; another user's session goes on unaffected.
func TestFloodIsLimited(t *testing.T) {
	var lines atomic.Int64
	svc, url, api := securityHub(t, Options{Logger: slog.New(lineCounter{&lines})})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := joinAs(ctx, t, url, api, 1, mintPrivs(t, 1, privPublisher))
	tone := opusTrack(t, "p")
	feed(ctx, tone)
	if _, err := pub.Publish(ctx, tone); err != nil {
		t.Fatal(err)
	}
	watcher := joinAs(ctx, t, url, api, 2, mintPrivs(t, 2, privSubscriber))
	remote, err := watcher.Subscribe(ctx, 1, rtc.KindAudio)
	if err != nil {
		t.Fatal(err)
	}
	n := counter(t, remote)

	before := lines.Load()
	flood := dialRaw(t, url)
	msgs := []string{`garbage`, `{"type":"ping","id":1}`, `{"type":"join","id":2,"appId":"demo","channel":"room","uid":5,"token":"cam1.x.y"}`, `{"type":"fly"}`}
	// Bursts of 50 messages (each is answered), read back before the next burst: a flood as
	// fast as the hub answers, until it closes the socket.
	sent, got := 0, 0
flooding:
	for sent < 5000 {
		for i := 0; i < 50; i++ {
			if flood.WriteMessage(websocket.TextMessage, []byte(msgs[(sent+i)%len(msgs)])) != nil {
				break flooding
			}
		}
		sent += 50
		for i := 0; i < 50; i++ {
			flood.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, b, err := flood.ReadMessage()
			if err != nil {
				break flooding
			}
			if strings.Contains(string(b), rtc.CodeRateLimited) {
				got++
			}
		}
	}
	flooded := lines.Load() - before
	t.Logf("flood: %d messages sent, %d answered RATE_LIMITED, %d log lines, stats %+v", sent, got, flooded, svc.Stats())
	if got == 0 {
		t.Error("no RATE_LIMITED reply to a flood")
	}
	if svc.Stats().FloodClosed != 1 || sent >= 5000 {
		t.Errorf("the flooding session was not closed: %+v", svc.Stats())
	}
	if flooded > 40 {
		t.Errorf("the flood wrote %d log lines", flooded)
	}
	if svc.Stats().LogsSuppressed == 0 {
		t.Error("no log line suppressed")
	}

	// An oversized frame closes its socket at once, without a line per byte.
	big := dialRaw(t, url)
	big.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":1,"sdp":"`+strings.Repeat("a", rtc.MaxMessageBytes)+`"}`))
	big.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := big.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("oversized frame: %v, want close 1009", err)
	}

	// The others never noticed.
	if packetsIn(n, time.Second) == 0 {
		t.Fatal("the watcher stopped receiving during the flood")
	}
	for _, c := range []*rtc.Client{pub, watcher} {
		select {
		case <-c.Done():
			t.Fatalf("a legitimate user was disconnected: %v", c.Err())
		default:
		}
	}
	if got := svc.ChannelUsers("demo", "room"); len(got) != 2 {
		t.Errorf("channel users %v, want [1 2]", got)
	}
}

// TestRequestRate: requests beyond the operation rate are answered RATE_LIMITED without
// closing the session, which works again after a pause.
func TestRequestRate(t *testing.T) {
	_, url, api := securityHub(t, Options{OpRate: 1, OpBurst: 3})
	u := dialUser(t, url, api)
	accepted(t, "join", u.join(4, mintPrivs(t, 4, privSubscriber)))
	codes := map[string]int{}
	for range 6 {
		r := u.request(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(9)), Kind: rtc.KindVideo})
		codes[r.Error.Code]++
	}
	if codes[rtc.CodeNoSuchUser] != 2 || codes[rtc.CodeRateLimited] != 4 {
		t.Fatalf("replies %v, want 2 NO_SUCH_USER then RATE_LIMITED", codes)
	}
	accepted(t, "ping while requests are limited", u.request(rtc.Message{Type: rtc.TypePing}))
	time.Sleep(1100 * time.Millisecond)
	if r := u.request(rtc.Message{Type: rtc.TypeSubscribe, UID: ptr(uint32(9)), Kind: rtc.KindVideo}); r.Error.Code != rtc.CodeNoSuchUser {
		t.Fatalf("after a pause: %v", r.Error)
	}
}

// TestRenewRules: a renewal must name the same App, channel and uid; one that drops a
// privilege in use stops it (the others see the track go, and no more media).
func TestRenewRules(t *testing.T) {
	_, url, api := securityHub(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	user := joinAs(ctx, t, url, api, 5, mintPrivs(t, 5, privPublisher))
	tone := opusTrack(t, "u")
	feed(ctx, tone)
	if _, err := user.Publish(ctx, tone); err != nil {
		t.Fatal(err)
	}
	watcher := joinAs(ctx, t, url, api, 6, mintPrivs(t, 6, privSubscriber))
	remote, err := watcher.Subscribe(ctx, 5, rtc.KindAudio)
	if err != nil {
		t.Fatal(err)
	}
	n := counter(t, remote)
	other, _, _ := token.Mint("demo", testCert, "garage", 5, token.RolePublisher, time.Hour, time.Now())
	for _, tc := range []struct{ name, tok, code string }{
		{"another uid", mintPrivs(t, 6, privPublisher), rtc.CodeTokenWrongUID},
		{"the wildcard", mintPrivs(t, 0, privSubscriber), rtc.CodeTokenWrongUID},
		{"another channel", other, rtc.CodeTokenWrongChannel},
		{"ten years", signed(t, token.Claims{UID: 5, Privileges: privPublisher, ExpiresAt: time.Now().Add(87600 * time.Hour).Unix()}, testCert), rtc.CodeTokenInvalid},
	} {
		if _, err := user.RenewToken(ctx, tc.tok); err == nil || !strings.Contains(err.Error(), tc.code) {
			t.Errorf("renew with %s: %v, want %s", tc.name, err, tc.code)
		}
	}
	if packetsIn(n, time.Second) == 0 {
		t.Fatal("the refused renewals stopped the media")
	}
	// A valid renewal without publishing: the audio stops for everyone.
	if _, err := user.RenewToken(ctx, mintPrivs(t, 5, privSubscriber)); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for unpublished := false; !unpublished; {
		select {
		case m := <-watcher.Events():
			unpublished = m.Event == rtc.EventUserUnpublished && m.UID != nil && *m.UID == 5
		case <-deadline:
			t.Fatal("no user-unpublished after a renewal without publishAudio")
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := packetsIn(n, time.Second); got != 0 {
		t.Errorf("%d packets forwarded after the privilege was dropped", got)
	}
}

// TestCertificateRotation: tokens signed with the previous certificate (named by its key id)
// verify while it is kept; an unknown key id or a retired certificate does not.
func TestCertificateRotation(t *testing.T) {
	const previous = "the-previous-certificate-32chars"
	_, url, api := securityHub(t, Options{
		Verify: func(app, kid string) (string, bool) {
			if app != "demo" {
				return "", false
			}
			return token.Match(kid, testCert, previous)
		},
	})
	legacy := func(cert string) string { // a token from before key ids: no "kid"
		body, _ := json.Marshal(token.Claims{AppID: "demo", Channel: "room", UID: 8, Privileges: privSubscriber,
			IssuedAt: time.Now().Unix(), ExpiresAt: time.Now().Add(time.Hour).Unix()})
		payload := "cam1." + base64.RawURLEncoding.EncodeToString(body)
		h := hmac.New(sha256.New, []byte(cert))
		h.Write([]byte(payload))
		return payload + "." + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
	}
	for _, tc := range []struct {
		name, tok, code string
	}{
		{"current", signed(t, token.Claims{UID: 8, Privileges: privSubscriber}, testCert), ""},
		{"previous", signed(t, token.Claims{UID: 8, Privileges: privSubscriber}, previous), ""},
		{"legacy, current", legacy(testCert), ""},
		{"legacy, previous", legacy(previous), rtc.CodeTokenInvalid},
		{"retired", signed(t, token.Claims{UID: 8, Privileges: privSubscriber}, "a-retired-certificate-of-32-char"), rtc.CodeTokenInvalid},
	} {
		r := dialUser(t, url, api).join(8, tc.tok)
		if tc.code == "" {
			accepted(t, tc.name, r)
		} else {
			refusedWith(t, tc.name, r, tc.code)
		}
	}
}
