package whip_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/sfu"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/hub/whip"
	"github.com/camagent/camagent/hub/whip/whiptest"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

const testCert = "0123456789abcdef0123456789abcdef"

// env is a channel service with the WHIP/WHEP routes, where a bearer is a channel token.
type env struct {
	svc  *sfu.Service
	h    *whip.Handler
	base string
	api  *webrtc.API // the signalling users'
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with interceptors on the hub's side (closest to the network).
func newEnvWith(t *testing.T, hubInterceptors []interceptor.Factory) *env {
	t.Helper()
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	// The hub's own API answers NACKs from its per-track caches, as camhub's does.
	hubAPI, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true, NoNACKResponder: true, Interceptors: hubInterceptors})
	if err != nil {
		t.Fatal(err)
	}
	svc := sfu.New(sfu.Options{API: hubAPI, Certificate: func(app string) (string, bool) { return testCert, app == "demo" }})
	h := whip.New(whip.Options{SFU: svc, Authorize: func(r *http.Request, tg whip.Target) (*whip.Grant, error) {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return nil, &whip.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "no bearer"}
		}
		return &whip.Grant{AppID: tg.AppID, Channel: tg.Channel, Token: bearer}, nil
	}})
	mux := http.NewServeMux()
	mux.Handle("GET /rtc", svc)
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); svc.Close(); h.Wait() })
	return &env{svc: svc, h: h, base: srv.URL, api: api}
}

func (e *env) token(t *testing.T, channel string, uid uint32, role string) string {
	t.Helper()
	tok, _, err := token.Mint("demo", testCert, channel, uid, role, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// sdkUser joins with the project's own Go client, as the device and the SDK do.
func (e *env) sdkUser(ctx context.Context, t *testing.T, channel string, uid uint32) *rtc.Client {
	t.Helper()
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: strings.Replace(e.base, "http", "ws", 1) + "/rtc", API: e.api})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Join(ctx, "demo", channel, uid, e.token(t, channel, uid, token.RolePublisher)); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitEvent waits for an event matching ok (seen before, or from now on).
func waitEvent(ctx context.Context, t *testing.T, l *rtctest.EventLog, what string, ok func(*rtc.Message) bool) {
	t.Helper()
	if _, err := l.Wait(ctx, what, ok); err != nil {
		t.Fatal(err)
	}
}

var event = rtctest.Is

func outsideAPI(t *testing.T) *webrtc.API {
	t.Helper()
	api, err := whiptest.API()
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// startRoom is a channel "room" with an SDK user, uid 1, talking at 440 Hz; and an outside
// client's API. The context ends with the test.
func startRoom(t *testing.T) (*env, context.Context, *webrtc.API, *rtc.Client, *rtctest.EventLog) {
	t.Helper()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	sdk := e.sdkUser(ctx, t, "room", 1)
	events := rtctest.LogEvents(sdk)
	if _, err := rtctest.PublishTone(ctx, sdk, 440); err != nil {
		t.Fatal(err)
	}
	return e, ctx, outsideAPI(t), sdk, events
}

func near(f, want float64) bool { return math.Abs(f-want) < 15 }

// TestInterop: a WHIP publisher, a WHEP viewer that talks, and an SDK user in one channel see
// and hear each other; joins, publishes and leaves of the outside clients are ordinary events;
// the WHEP viewer's first frame is a keyframe although the publisher's camera makes one only
// when asked; DELETE ends each resource and the others see user-left.
func TestInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("a whole call of WHIP, WHEP and SDK users: not in -short")
	}
	e, ctx, outside, sdk, events := startRoom(t)

	start := time.Now()
	pub, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/room", e.token(t, "room", 2, token.RolePublisher), 660)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WHIP POST answered in %s", time.Since(start).Round(time.Millisecond))
	waitEvent(ctx, t, events, "user-joined 2", event(rtc.EventUserJoined, 2, ""))
	for _, kind := range []string{rtc.KindVideo, rtc.KindAudio} {
		waitEvent(ctx, t, events, "user-published 2 "+kind, event(rtc.EventUserPublished, 2, kind))
	}

	// The viewer: one video m-line, two audio m-lines (one of them sends its talk tone).
	start = time.Now()
	view, err := whiptest.View(ctx, outside, e.base+"/whep/demo/room", e.token(t, "room", 3, token.RolePublisher), 1, 2, 880)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WHEP POST answered in %s", time.Since(start).Round(time.Millisecond))
	waitEvent(ctx, t, events, "user-joined 3", event(rtc.EventUserJoined, 3, ""))
	waitEvent(ctx, t, events, "user-published 3 audio", event(rtc.EventUserPublished, 3, rtc.KindAudio))

	// The viewer sees the WHIP publisher's picture, starting with a keyframe.
	vt, err := view.Next(ctx, webrtc.RTPCodecTypeVideo)
	if err != nil {
		t.Fatal(err)
	}
	counters, firstIDR, err := whiptest.Frames(ctx, vt, 30)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WHEP viewer: first video %s after its POST; frames %d..%d", time.Since(start).Round(time.Millisecond), counters[0], counters[len(counters)-1])
	if !firstIDR {
		t.Error("the WHEP viewer's first access unit was not a keyframe")
	}
	for i := 1; i < len(counters); i++ {
		if counters[i] <= counters[i-1] {
			t.Fatalf("frame counters do not advance: %v", counters)
		}
	}
	// and hears both the SDK user and the WHIP publisher, one on each audio m-line.
	heard := map[float64]bool{}
	for i := 0; i < 2; i++ {
		at, err := view.Next(ctx, webrtc.RTPCodecTypeAudio)
		if err != nil {
			t.Fatal(err)
		}
		f, err := whiptest.ToneOf(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []float64{440, 660} {
			if near(f, want) {
				heard[want] = true
			}
		}
		t.Logf("WHEP viewer audio m-line %d: %.0f Hz", i, f)
	}
	if !heard[440] || !heard[660] {
		t.Errorf("the WHEP viewer heard %v, want the SDK user's 440 Hz and the WHIP publisher's 660 Hz", heard)
	}

	// The SDK user sees the WHIP picture and hears the WHIP tone and the WHEP viewer's talk.
	sv, err := sdk.Subscribe(ctx, 2, rtc.KindVideo)
	if err != nil {
		t.Fatal(err)
	}
	if c, _, err := whiptest.Frames(ctx, sv, 10); err != nil {
		t.Fatalf("SDK user's video from the WHIP publisher: %v (%d frames)", err, len(c))
	}
	for uid, want := range map[uint32]float64{2: 660, 3: 880} {
		tr, err := sdk.Subscribe(ctx, uid, rtc.KindAudio)
		if err != nil {
			t.Fatal(err)
		}
		f, err := whiptest.ToneOf(ctx, tr)
		if err != nil {
			t.Fatal(err)
		}
		if !near(f, want) {
			t.Errorf("the SDK user hears %.0f Hz from uid %d, want %.0f", f, uid, want)
		}
	}

	// DELETE with another credential is refused and changes nothing; with its own, ends it.
	if code := whiptest.Delete(view.Location, "someone-else"); code != http.StatusNotFound {
		t.Errorf("DELETE with another Authorization: %d, want 404", code)
	}
	if n := len(e.svc.ChannelUsers("demo", "room")); n != 3 {
		t.Errorf("after a refused DELETE the channel has %d users, want 3", n)
	}
	if code := view.Close(); code != http.StatusOK {
		t.Errorf("DELETE the WHEP resource: %d", code)
	}
	waitEvent(ctx, t, events, "user-left 3", func(m *rtc.Message) bool {
		return m.Event == rtc.EventUserLeft && m.UID != nil && *m.UID == 3 && m.Reason == "quit"
	})
	if code := whiptest.Delete(view.Location, view.Bearer); code != http.StatusNotFound {
		t.Errorf("a second DELETE: %d, want 404", code)
	}
	if code := pub.Close(); code != http.StatusOK {
		t.Errorf("DELETE the WHIP resource: %d", code)
	}
	waitEvent(ctx, t, events, "user-left 2", event(rtc.EventUserLeft, 2, ""))
	if got := e.svc.ChannelUsers("demo", "room"); len(got) != 1 || got[0] != 1 {
		t.Errorf("channel users after both DELETEs: %v, want [1]", got)
	}
	if e.h.Len() != 0 {
		t.Errorf("%d resources left", e.h.Len())
	}
}

// TestViewerSlotRefill: a WHEP viewer that arrives before anyone publishes gets the track when
// it comes (a keyframe first), and a slot whose publisher leaves takes the next one.
func TestViewerSlotRefill(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	outside := outsideAPI(t)
	view, err := whiptest.View(ctx, outside, e.base+"/whep/demo/late", e.token(t, "late", 0, token.RoleSubscriber), 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	first, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/late", e.token(t, "late", 10, token.RolePublisher), 500)
	if err != nil {
		t.Fatal(err)
	}
	vt, err := view.Next(ctx, webrtc.RTPCodecTypeVideo)
	if err != nil {
		t.Fatal(err)
	}
	c1, idr, err := whiptest.Frames(ctx, vt, 10)
	if err != nil || !idr {
		t.Fatalf("first publisher: %d frames, first a keyframe %v, err %v", len(c1), idr, err)
	}
	first.Close()
	second, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/late", e.token(t, "late", 11, token.RolePublisher), 500)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	// The same m-line carries the second camera, whose counter starts again from 0.
	c2, _, err := whiptest.Frames(ctx, vt, 40)
	if err != nil {
		t.Fatal(err)
	}
	restarted := false
	for i := 1; i < len(c2); i++ {
		restarted = restarted || c2[i] < c2[i-1]
	}
	if !restarted && c2[0] > c1[len(c1)-1] {
		t.Errorf("the slot did not switch to the second publisher: %v then %v", c1, c2)
	}
	t.Logf("slot: %d..%d, then %d..%d", c1[0], c1[len(c1)-1], c2[0], c2[len(c2)-1])
}

// TestWHEPLoss: with 5 % of the hub's video packets lost on the way to a WHEP viewer, the
// hub resends them from its track cache, mapped to the viewer's slot numbering, on the
// viewer's NACKs, and every frame arrives.
func TestWHEPLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("streams through a lossy link until every frame is complete: not in -short")
	}
	loss := &rtctest.LossyLink{Rate: 0.05}
	e := newEnvWith(t, []interceptor.Factory{loss})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	outside := outsideAPI(t)
	pub, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/lossy", e.token(t, "lossy", 10, token.RolePublisher), 500)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	view, err := whiptest.View(ctx, outside, e.base+"/whep/demo/lossy", e.token(t, "lossy", 0, token.RoleSubscriber), 1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	vt, err := view.Next(ctx, webrtc.RTPCodecTypeVideo)
	if err != nil {
		t.Fatal(err)
	}
	counters, idr, err := whiptest.Frames(ctx, vt, 150)
	if err != nil || !idr {
		t.Fatalf("%d frames, first a keyframe %v, err %v", len(counters), idr, err)
	}
	missing := 0
	for i := 1; i < len(counters); i++ {
		missing += int(counters[i]-counters[i-1]) - 1
	}
	st := e.svc.Stats()
	t.Logf("%d frames; %d video packets lost, %d sent again (%d resent from the cache, %d no longer there); %d frames missing",
		len(counters), loss.Dropped(), loss.Resent(), st.NACKResent, st.NACKMissed, missing)
	if loss.Dropped() == 0 {
		t.Fatal("no packet was lost: the lossy link did not run")
	}
	if missing > 0 {
		t.Errorf("%d frames never completed despite NACKs", missing)
	}
}
