package sfu

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
)

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
