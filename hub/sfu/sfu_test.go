package sfu

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
)

const testCert = "0123456789abcdef0123456789abcdef"

func newTestService(t *testing.T) (*Service, string) {
	t.Helper()
	return startTestService(t, Options{})
}

// startTestService serves a Service with options o on a loopback HTTP server until the test
// ends and returns it with its signalling URL. Unset, the API is one like the hub's (no
// per-subscriber NACK responder) and the demo App's certificate is testCert.
func startTestService(t *testing.T, o Options) (*Service, string) {
	t.Helper()
	if o.API == nil {
		api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true, NoNACKResponder: true}) // as the hub's
		if err != nil {
			t.Fatal(err)
		}
		o.API = api
	}
	if o.Certificate == nil {
		o.Certificate = func(app string) (string, bool) { return testCert, app == "demo" }
	}
	svc := New(o)
	srv := httptest.NewServer(svc)
	t.Cleanup(func() { srv.Close(); svc.Close() })
	return svc, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dialRaw(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readReply(t *testing.T, c *websocket.Conn) rtc.Message {
	t.Helper()
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m rtc.Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("hub sent non-JSON %q", b)
		}
		if m.Type == rtc.TypeReply {
			return m
		}
	}
}

// TestGarbageSignalling: malformed, oversized and out-of-order messages get typed errors,
// the socket stays usable, and another user in the channel is not disturbed.
func TestGarbageSignalling(t *testing.T) {
	svc, url := newTestService(t)
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	tok, _, _ := token.Mint("demo", testCert, "room", 1, token.RolePublisher, time.Hour, time.Now())
	if _, err := good.Join(ctx, "demo", "room", 1, tok); err != nil {
		t.Fatal(err)
	}

	bad := dialRaw(t, url)
	send := func(s string) rtc.Message {
		if err := bad.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
		return readReply(t, bad)
	}
	for _, tc := range []struct{ msg, code string }{
		{`garbage`, rtc.CodeBadMessage},
		{`{"type":"fly","id":9}`, rtc.CodeBadMessage},
		{`{"type":"publish","id":2,"sdp":"v=0"}`, rtc.CodeNotJoined},
		{`{"type":"subscribe","id":3,"uid":1,"kind":"video"}`, rtc.CodeNotJoined},
		{`{"type":"answer","sdp":"v=0"}`, rtc.CodeNotJoined},
		{`{"type":"restart","id":8,"connection":"publish"}`, rtc.CodeNotJoined},
		{`{"type":"join","id":4,"appId":"demo","channel":"room","uid":2}`, rtc.CodeTokenMissing},
		{`{"type":"join","id":5,"appId":"nope","channel":"room","uid":2,"token":"x"}`, rtc.CodeAppUnknown},
		{`{"type":"join","id":6,"appId":"demo","channel":"room","uid":2,"token":"cam1.x.y"}`, rtc.CodeTokenInvalid},
	} {
		r := send(tc.msg)
		if r.OK == nil || *r.OK || r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("%.50s: reply %+v, want %s", tc.msg, r, tc.code)
		}
	}
	// Joined, then garbage SDP and requests for things that are not there.
	tok2, _, _ := token.Mint("demo", testCert, "room", 2, token.RoleSubscriber, time.Hour, time.Now())
	if r := send(`{"type":"join","id":10,"appId":"demo","channel":"room","uid":2,"token":"` + tok2 + `"}`); r.OK == nil || !*r.OK {
		t.Fatalf("join: %+v", r)
	}
	for _, tc := range []struct{ msg, code string }{
		{`{"type":"join","id":11,"appId":"demo","channel":"room","uid":2,"token":"` + tok2 + `"}`, rtc.CodeAlreadyJoined},
		{`{"type":"publish","id":12,"sdp":"this is not sdp"}`, rtc.CodeInvalidParams},
		{`{"type":"subscribe","id":13,"uid":99,"kind":"video"}`, rtc.CodeNoSuchUser},
		{`{"type":"subscribe","id":14,"uid":1,"kind":"video"}`, rtc.CodeNotPublished},
		{`{"type":"unsubscribe","id":15,"uid":1,"kind":"video"}`, rtc.CodeNotPublished},
		{`{"type":"renew","id":16,"token":"junk"}`, rtc.CodeTokenInvalid},
		{`{"type":"restart","id":18,"connection":"subscribe"}`, rtc.CodeInvalidParams}, // no such connection
		{`{"type":"restart","id":19,"connection":"sideways"}`, rtc.CodeInvalidParams},
	} {
		r := send(tc.msg)
		if r.OK == nil || *r.OK || r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("%.50s: reply %+v, want %s", tc.msg, r, tc.code)
		}
	}
	if r := send(`{"type":"ping","id":17}`); r.OK == nil || !*r.OK {
		t.Errorf("ping after errors: %+v", r)
	}
	if got := svc.ChannelUsers("demo", "room"); len(got) != 2 {
		t.Errorf("channel users %v, want [1 2]", got)
	}
	select {
	case <-good.Done():
		t.Fatalf("the well-behaved user was disconnected: %v", good.Err())
	default:
	}
}

// TestUIDCollision: a second join with the same uid replaces the first session, which is told why.
func TestUIDCollision(t *testing.T) {
	svc, url := newTestService(t)
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, _, _ := token.Mint("demo", testCert, "room", 5, token.RolePublisher, time.Hour, time.Now())
	first, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.Join(ctx, "demo", "room", 5, tok); err != nil {
		t.Fatal(err)
	}
	second, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.Join(ctx, "demo", "room", 5, tok); err != nil {
		t.Fatal(err)
	}
	var replaced bool
	for m := range first.Events() {
		if m.Event == rtc.EventReplaced {
			replaced = true
		}
	}
	if !replaced {
		t.Error("the replaced session got no connection-replaced event")
	}
	<-first.Done()
	time.Sleep(50 * time.Millisecond)
	if got := svc.ChannelUsers("demo", "room"); len(got) != 1 || got[0] != 5 {
		t.Errorf("channel users %v, want [5]", got)
	}
}

func TestKeyframeStart(t *testing.T) {
	cases := []struct {
		name string
		fn   func([]byte) bool
		p    []byte
		want bool
	}{
		{"vp8 key", vp8KeyframeStart, []byte{0x10, 0x00}, true},
		{"vp8 inter", vp8KeyframeStart, []byte{0x10, 0x01}, false},
		{"vp8 not start", vp8KeyframeStart, []byte{0x00, 0x00}, false},
		{"vp8 key with 15-bit picture id", vp8KeyframeStart, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 truncated", vp8KeyframeStart, []byte{0x90}, false},
	}
	for _, tc := range cases {
		if got := tc.fn(tc.p); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
