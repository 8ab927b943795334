package sfu

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
)

// TestReconnectGrace: a user whose connection breaks keeps its place for the grace period —
// rejoining within it, the others see no user-left (nor a second user-joined); not rejoining,
// they get user-left with reason "timeout" once it is over.
func TestReconnectGrace(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the reconnect grace: not in -short")
	}
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	svc := New(Options{API: api, Certificate: func(app string) (string, bool) { return testCert, app == "demo" },
		ReconnectGrace: time.Second, Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(svc)
	defer func() { srv.Close(); svc.Close() }()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	watcher, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	wtok, _, _ := token.Mint("demo", testCert, "room", 1, token.RolePublisher, time.Hour, time.Now())
	if _, err := watcher.Join(ctx, "demo", "room", 1, wtok); err != nil {
		t.Fatal(err)
	}
	tok, _, _ := token.Mint("demo", testCert, "room", 7, token.RolePublisher, time.Hour, time.Now())
	join := func() *websocket.Conn {
		c := dialRaw(t, url)
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","id":1,"appId":"demo","channel":"room","uid":7,"token":"`+tok+`"}`)); err != nil {
			t.Fatal(err)
		}
		if r := readReply(t, c); r.OK == nil || !*r.OK {
			t.Fatalf("join: %+v", r)
		}
		return c
	}
	// events collects the watcher's events about uid 7 for d.
	events := func(d time.Duration) []string {
		var got []string
		deadline := time.After(d)
		for {
			select {
			case m := <-watcher.Events():
				if m.UID != nil && *m.UID == 7 {
					got = append(got, m.Event+":"+m.Reason)
				}
			case <-deadline:
				return got
			}
		}
	}

	first := join()
	if got := events(200 * time.Millisecond); len(got) != 1 || got[0] != "user-joined:" {
		t.Fatalf("watcher saw %v, want one user-joined", got)
	}
	first.UnderlyingConn().Close() // the network breaks: no close frame
	time.Sleep(200 * time.Millisecond)
	second := join()
	if got := events(1500 * time.Millisecond); len(got) != 0 {
		t.Errorf("a reconnect within the grace period showed the watcher %v", got)
	}
	if users := svc.ChannelUsers("demo", "room"); len(users) != 2 {
		t.Errorf("channel users %v, want [1 7]", users)
	}

	second.UnderlyingConn().Close() // and now for good
	got := events(2500 * time.Millisecond)
	if len(got) != 1 || got[0] != "user-left:timeout" {
		t.Errorf("after the grace period the watcher saw %v, want user-left:timeout", got)
	}
	if users := svc.ChannelUsers("demo", "room"); len(users) != 1 {
		t.Errorf("channel users %v, want [1]", users)
	}
}
