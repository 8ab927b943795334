package sfu

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/gorilla/websocket"
)

// TestResumeOnFreshSocket: a publisher's signalling socket stuck for good (held in a relay,
// as segments wait in TCP's retransmission timer after a cut) while its media flows is
// replaced by a fresh socket: the session goes on with its peer connections, the request made
// on the stuck socket is answered (the client sent it again), the event the hub sent on the
// stuck socket arrives (the hub sent it again), and the others never see the user leave.
func TestResumeOnFreshSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a signalling socket for seconds: not in -short")
	}
	const ping = 200 * time.Millisecond
	svc, url := startTestService(t, Options{PingInterval: ping, PongWait: time.Second, ResumeWait: 5 * time.Second})
	hubAddr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/rtc")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	fr := newFreezer(t, hubAddr)
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := rtc.Dial(ctx, rtc.ClientOptions{URL: "ws://" + fr.ln.Addr().String() + "/rtc", API: api,
		PingInterval: ping, ReadTimeout: time.Second, RestartAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tok, _, _ := token.Mint("demo", testCert, "room", 1, token.RolePublisher, time.Hour, time.Now())
	if _, err := a.Join(ctx, "demo", "room", 1, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := rtctest.PublishTone(ctx, a, 440); err != nil {
		t.Fatal(err)
	}
	aEvents := rtctest.LogEvents(a)
	viewer := joinCuttable(ctx, t, url, 9, -1)
	vEvents := rtctest.LogEvents(viewer.c)
	got := countRTP(viewer.c, ctx, t, 1)
	waitPackets(t, got, 25, 10*time.Second, "before the hold")

	fr.holdOpen()
	held := time.Now()
	// A request on the stuck socket, and an event the hub sends on it.
	renewed := make(chan error, 1)
	go func() {
		tok2, _, _ := token.Mint("demo", testCert, "room", 1, token.RolePublisher, 2*time.Hour, time.Now())
		_, err := a.RenewToken(ctx, tok2)
		renewed <- err
	}()
	joinCuttable(ctx, t, url, 5, -1)
	if _, err := aEvents.Wait(ctx, "user-joined 5, sent on the stuck socket", func(m *rtc.Message) bool {
		return m.Event == rtc.EventUserJoined && m.UID != nil && *m.UID == 5
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-renewed; err != nil {
		t.Fatalf("the renewal sent on the stuck socket: %v", err)
	}
	t.Logf("resumed: event and reply delivered %v after the hold began", time.Since(held).Round(time.Millisecond))
	waitPackets(t, got, 50, 10*time.Second, "after the resume")
	select {
	case <-a.Done():
		t.Fatalf("the client ended: %v", a.Err())
	default:
	}
	if a.Resumes() != 1 || svc.Stats().Resumes != 1 {
		t.Fatalf("resumes: client %d, hub %d; want 1 each", a.Resumes(), svc.Stats().Resumes)
	}
	if vEvents.Has(func(m *rtc.Message) bool {
		return m.UID != nil && *m.UID == 1 && (m.Event == rtc.EventUserLeft || m.Event == rtc.EventUserUnpublished)
	}) {
		t.Fatal("the viewer saw the resumed user leave or unpublish")
	}
	// The session works on its fresh socket: a request gets the hub's own answer.
	if _, err := a.Subscribe(ctx, 9, rtc.KindVideo); err == nil || !strings.Contains(err.Error(), "video") {
		t.Fatalf("a request after the resume: %v, want the hub's answer that uid 9 has no video", err)
	}
}

// TestResumeRefused: a resume naming no session is refused with RESUME_UNKNOWN and its socket
// closed; a resume on a socket that has joined is refused; nothing else happens.
func TestResumeRefused(t *testing.T) {
	svc, url := startTestService(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ask := func(conn *websocket.Conn, secret string) *rtc.Message {
		t.Helper()
		b, _ := json.Marshal(&rtc.Message{Type: rtc.TypeResume, ID: 7, Resume: secret, Seq: 0})
		if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var r rtc.Message
		if err := conn.ReadJSON(&r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if r := ask(conn, "0123456789abcdef"); r.OK == nil || *r.OK || r.Error == nil || r.Error.Code != rtc.CodeResumeUnknown {
		t.Fatalf("resume of no session: %+v", r)
	}
	if _, _, err := conn.ReadMessage(); err == nil {
		t.Fatal("the socket of a refused resume stayed open")
	}

	// A session's own secret on its own socket, once joined: refused, the session goes on.
	join := func(uid uint32) (*websocket.Conn, string) {
		t.Helper()
		conn, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, _ := token.Mint("demo", testCert, "room", uid, token.RolePublisher, time.Hour, time.Now())
		b, _ := json.Marshal(&rtc.Message{Type: rtc.TypeJoin, ID: 1, AppID: "demo", Channel: "room", UID: &uid, Token: tok, CanResume: true})
		conn.WriteMessage(websocket.TextMessage, b)
		var r rtc.Message
		if err := conn.ReadJSON(&r); err != nil || r.OK == nil || !*r.OK || r.Resume == "" || r.Seq != 1 {
			t.Fatalf("join with canResume: %+v, %v; want ok, a secret and seq 1", r, err)
		}
		return conn, r.Resume
	}
	c3, secret3 := join(3)
	defer c3.Close()
	if r := ask(c3, secret3); r.Error == nil || r.Error.Code != rtc.CodeAlreadyJoined {
		t.Fatalf("resume on the joined socket itself: %+v", r)
	}
	if got := svc.ChannelUsers("demo", "room"); len(got) != 1 || got[0] != 3 {
		t.Fatalf("users %v, want [3]", got)
	}

	// A session that ended with a goodbye cannot be resumed.
	c4, secret4 := join(4)
	c4.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	c4.Close()
	for deadline := time.Now().Add(5 * time.Second); len(svc.ChannelUsers("demo", "room")) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("users %v after 4 closed its socket", svc.ChannelUsers("demo", "room"))
		}
	}
	fresh, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if r := ask(fresh, secret4); r.Error == nil || r.Error.Code != rtc.CodeResumeUnknown {
		t.Fatalf("resume of an ended session: %+v", r)
	}
	if svc.Stats().Resumes != 0 {
		t.Fatalf("resumes %d, want 0", svc.Stats().Resumes)
	}
}
