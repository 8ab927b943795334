package sfu

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
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
	o, err := peer.Offer(context.Background(), pc, nil, peer.Gathering{})
	if err != nil {
		t.Fatal(err)
	}
	return edit(o)
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

func ptr[T any](v T) *T { return &v }

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
