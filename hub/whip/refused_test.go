package whip_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/hub/whip/whiptest"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// TestRefused: what an outside client may not do is refused with a clear 4xx and leaves the
// channel and the other users as they were.
func TestRefused(t *testing.T) {
	e, ctx, outside, _, events := startRoom(t)
	good, err := whiptest.View(ctx, outside, e.base+"/whep/demo/room", e.token(t, "room", 2, token.RoleSubscriber), 0, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	goodAudio, err := good.Next(ctx, webrtc.RTPCodecTypeAudio)
	if err != nil {
		t.Fatal(err)
	}
	joins := e.svc.Stats().Joins

	status := func(name string, err error) int {
		code := whiptest.StatusOf(err)
		if code == 0 {
			t.Fatalf("%s: not refused over HTTP: %v", name, err)
		}
		return code
	}
	sub := e.token(t, "room", 7, token.RoleSubscriber)
	cases := []struct {
		name   string
		run    func() error
		status int
	}{
		{"WHIP without a bearer", func() error {
			_, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/room", "", 300)
			return err
		}, 401},
		{"WHIP with a forged token", func() error {
			_, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/room", forge(e.token(t, "room", 8, token.RolePublisher)), 300)
			return err
		}, 401},
		{"WHIP with a token for another channel", func() error {
			_, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/room", e.token(t, "elsewhere", 8, token.RolePublisher), 300)
			return err
		}, 403},
		{"WHIP with a subscriber token", func() error {
			_, err := whiptest.Publish(ctx, outside, e.base+"/whip/demo/room", sub, 300)
			return err
		}, 403},
		{"WHIP into an unknown App", func() error {
			_, err := whiptest.Publish(ctx, outside, e.base+"/whip/nope/room", e.token(t, "room", 8, token.RolePublisher), 300)
			return err
		}, 404},
		{"WHEP with an expired token", func() error {
			old, _, _ := token.Mint("demo", testCert, "room", 8, token.RoleSubscriber, time.Hour, time.Now().Add(-2*time.Hour))
			_, err := whiptest.View(ctx, outside, e.base+"/whep/demo/room", old, 1, 0, 0)
			return err
		}, 401},
	}
	for _, tc := range cases {
		if got := status(tc.name, tc.run()); got != tc.status {
			t.Errorf("%s: HTTP %d, want %d", tc.name, got, tc.status)
		}
	}
	// Not SDP, too much SDP, not application/sdp, no media.
	for _, tc := range []struct {
		name, ctype, body string
		status            int
	}{
		{"garbage", "application/sdp", "this is not SDP \x00\xff", 400},
		{"oversized", "application/sdp", "v=0\r\n" + strings.Repeat("a=x:"+strings.Repeat("y", 1000)+"\r\n", 100), 413},
		{"text/plain", "text/plain", "v=0\r\n", 415},
		{"no media", "application/sdp", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", 400},
	} {
		for _, path := range []string{"/whip/demo/room", "/whep/demo/room"} {
			code, body, loc, err := whiptest.PostSDP(ctx, e.base+path, e.token(t, "room", 9, token.RolePublisher), tc.ctype, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.status || loc != "" {
				t.Errorf("%s to %s: HTTP %d (Location %q), want %d: %s", tc.name, path, code, loc, tc.status, body)
			}
		}
	}
	// No trickle ICE: PATCH on a resource is 405 and leaves it alone.
	req, _ := http.NewRequest(http.MethodPatch, good.Location, strings.NewReader("a=candidate:1 1 udp 1 127.0.0.1 9 typ host"))
	req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	req.Header.Set("Authorization", "Bearer "+good.Bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PATCH: HTTP %d, want 405", resp.StatusCode)
	}
	if m := events.Find(func(m *rtc.Message) bool {
		return (m.Event == rtc.EventUserJoined || m.Event == rtc.EventUserLeft) && m.UID != nil && *m.UID != 2
	}); m != nil {
		t.Errorf("the SDK user saw %s %d during the refusals", m.Event, *m.UID)
	}
	if e.svc.Stats().Joins != joins {
		t.Errorf("refused requests joined the channel: %d joins, before %d", e.svc.Stats().Joins, joins)
	}
	if got := e.svc.ChannelUsers("demo", "room"); len(got) != 2 {
		t.Errorf("channel users after the refusals: %v, want the SDK user and the viewer", got)
	}
	if e.h.Len() != 1 {
		t.Errorf("%d resources, want the good viewer's only", e.h.Len())
	}
	// The viewer that was there all along still hears the SDK user.
	if f, err := whiptest.ToneOf(ctx, goodAudio); err != nil || !near(f, 440) {
		t.Errorf("the first viewer after the refusals: %.0f Hz, %v", f, err)
	}
}

// TestViewerMayNotTalk: a viewer whose token does not allow publishing audio offers to send
// it anyway; it still watches, but the hub answers its audio m-line as send-only, no audio of
// it is published, and nobody hears it.
func TestViewerMayNotTalk(t *testing.T) {
	e, ctx, outside, sdk, events := startRoom(t)
	refused := e.svc.Stats().RefusedMedia
	view, err := whiptest.View(ctx, outside, e.base+"/whep/demo/room", e.token(t, "room", 5, token.RoleSubscriber), 0, 1, 880)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	answer := view.PC.RemoteDescription().SDP
	if !strings.Contains(answer, "a=sendonly") || strings.Contains(answer, "a=sendrecv") {
		t.Errorf("the answer to a viewer that may not talk should be sendonly:\n%s", answer)
	}
	at, err := view.Next(ctx, webrtc.RTPCodecTypeAudio)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := whiptest.ToneOf(ctx, at); err != nil || !near(f, 440) {
		t.Errorf("the viewer hears %.0f Hz (%v), want the SDK user's 440", f, err)
	}
	waitEvent(ctx, t, events, "user-joined 5", event(rtc.EventUserJoined, 5, ""))
	// Long enough for media to have arrived and been announced had it been accepted.
	time.Sleep(2 * time.Second)
	if events.Has(event(rtc.EventUserPublished, 5, "")) {
		t.Fatal("the viewer that may not talk published")
	}
	if _, err := sdk.Subscribe(ctx, 5, rtc.KindAudio); err == nil {
		t.Error("the SDK user could subscribe to the audio of a viewer that may not talk")
	}
	if e.svc.Stats().RefusedMedia == refused {
		t.Error("the refused talk offer was not counted")
	}
}

// forge changes the first character of a token's signature (still well-formed). Not the last:
// its low bits are padding, which base64 decoding ignores, so changing A to B there (or B, C, D
// to A) leaves the signature as it was, and 1 forged token in 16 was valid.
func forge(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 1
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
