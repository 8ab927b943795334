package sfu

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/webrtc/v4"
)

// restartUser is a client whose media path the test can cut.
type restartUser struct {
	c   *rtc.Client
	net *rtctest.CutNet
}

func joinCuttable(ctx context.Context, t *testing.T, url string, uid uint32, restartAfter time.Duration) restartUser {
	t.Helper()
	n, err := rtctest.NewCutNet()
	if err != nil {
		t.Fatal(err)
	}
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true, Net: n})
	if err != nil {
		t.Fatal(err)
	}
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api, RestartAfter: restartAfter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tok, _, _ := token.Mint("demo", testCert, "room", uid, token.RolePublisher, time.Hour, time.Now())
	if _, err := c.Join(ctx, "demo", "room", uid, tok); err != nil {
		t.Fatal(err)
	}
	return restartUser{c, n}
}

// countRTP reads a track until it ends, counting packets.
func countRTP(c *rtc.Client, ctx context.Context, t *testing.T, uid uint32) *atomic.Int64 {
	t.Helper()
	tr, err := c.Subscribe(ctx, uid, rtc.KindAudio)
	if err != nil {
		t.Fatal(err)
	}
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

// waitPackets waits until n has grown by more than want, or fails the test after d.
func waitPackets(t *testing.T, n *atomic.Int64, want int64, d time.Duration, what string) time.Duration {
	t.Helper()
	start, from := time.Now(), n.Load()
	for n.Load()-from <= want {
		if time.Since(start) > d {
			t.Fatalf("%s: %d packets in %s, want more than %d", what, n.Load()-from, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// stalls checks that no packets arrive for a while: the cut really cut.
func stalls(t *testing.T, n *atomic.Int64, what string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // what was in flight
	from := n.Load()
	time.Sleep(time.Second)
	if got := n.Load() - from; got > 0 {
		t.Fatalf("%s: %d packets arrived over a cut path", what, got)
	}
}

// TestICERestart: when a viewer's or a publisher's media path dies (its UDP sockets go
// silent, as when a NAT forgets its mapping) while the signalling socket lives, the client
// restarts ICE and the media resumes on the same peer connections and tracks: nobody leaves,
// nothing is resubscribed.
func TestICERestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for dead media paths to come back through ICE restarts: not in -short")
	}
	svc, url := newTestService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watcher := joinCuttable(ctx, t, url, 9, 0)
	talker := joinCuttable(ctx, t, url, 1, 0)
	if _, err := rtctest.PublishTone(ctx, talker.c, 440); err != nil {
		t.Fatal(err)
	}
	viewer := joinCuttable(ctx, t, url, 2, 0)
	got := countRTP(viewer.c, ctx, t, 1)
	waitPackets(t, got, 25, 10*time.Second, "before the cut")

	// The viewer's path: the hub (which offers the subscribe connection) or the viewer,
	// whichever notices first, restarts it.
	restarts := svc.Stats().ICERestarts
	if k := viewer.net.Cut(); k == 0 {
		t.Fatal("the viewer had no sockets to cut")
	}
	stalls(t, got, "viewer cut")
	took := waitPackets(t, got, 50, 25*time.Second, "after the viewer's path died")
	t.Logf("viewer: audio back %s after the stall check (hub: %d ICE restarts, viewer: %d)", took.Round(time.Millisecond),
		svc.Stats().ICERestarts-restarts, viewer.c.ICERestarts())
	if svc.Stats().ICERestarts == restarts {
		t.Error("the viewer's media came back without an ICE restart")
	}

	// The talker's path: only the talker can offer its publish connection anew.
	restarts = svc.Stats().ICERestarts
	if k := talker.net.Cut(); k == 0 {
		t.Fatal("the talker had no sockets to cut")
	}
	stalls(t, got, "talker cut")
	took = waitPackets(t, got, 50, 25*time.Second, "after the talker's path died")
	t.Logf("talker: audio back %s after the stall check (%d ICE restarts)", took.Round(time.Millisecond), talker.c.ICERestarts())
	if talker.c.ICERestarts() == 0 || svc.Stats().ICERestarts == restarts {
		t.Errorf("the talker's media came back with %d ICE restarts (hub counted %d)", talker.c.ICERestarts(), svc.Stats().ICERestarts-restarts)
	}
	for _, u := range []restartUser{viewer, talker} {
		select {
		case <-u.c.Done():
			t.Fatalf("a client's session ended: %v", u.c.Err())
		default:
		}
	}
drain:
	for {
		select {
		case m := <-watcher.c.Events():
			if m.Event == rtc.EventUserLeft || m.Event == rtc.EventUserUnpublished {
				t.Errorf("the watcher saw %s for uid %d: a restart must not look like leaving", m.Event, *m.UID)
			}
		default:
			break drain
		}
	}
}

// TestNoICERestartIsLost: a client that does not restart ICE after its path died is removed
// once the hub has waited ICERestartWait (and the reconnect grace): the others see it leave.
func TestNoICERestartIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out ICERestartWait and the reconnect grace: not in -short")
	}
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	svc := New(Options{API: api, Certificate: func(app string) (string, bool) { return testCert, app == "demo" },
		ICERestartWait: time.Second, ReconnectGrace: time.Second, Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(svc)
	defer func() { srv.Close(); svc.Close() }()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	watcher := joinCuttable(ctx, t, url, 9, 0)
	talker := joinCuttable(ctx, t, url, 1, -1)
	if _, err := rtctest.PublishTone(ctx, talker.c, 440); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	talker.net.Cut()
	for {
		select {
		case m := <-watcher.c.Events():
			if m.Event == rtc.EventUserLeft && *m.UID == 1 {
				if m.Reason != "timeout" {
					t.Errorf("user-left reason %q, want timeout", m.Reason)
				}
				t.Logf("user-left %s after the cut", time.Since(start).Round(time.Millisecond))
				if talker.c.ICERestarts() != 0 {
					t.Errorf("a client with restarts off restarted %d times", talker.c.ICERestarts())
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("the talker whose path died was never removed")
		}
	}
}

// TestRestartThrottled: a client may not loop on restart requests (each costs the hub a
// gathering and an offer): a second one for the same connection within a second is refused.
func TestRestartThrottled(t *testing.T) {
	svc, _ := newTestService(t)
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := newSession(svc, nil, "test")
	s.pub, s.claims = pc, &token.Claims{AppID: "demo"}
	m := &rtc.Message{Type: rtc.TypeRestart, Connection: rtc.ConnPublish}
	if _, err := s.restart(m); err != nil {
		t.Fatalf("first restart: %v", err)
	}
	_, err = s.restart(m)
	if pe, ok := err.(*rtc.Error); !ok || pe.Code != rtc.CodeInvalidParams {
		t.Fatalf("second restart at once: %v, want %s", err, rtc.CodeInvalidParams)
	}
	s.mu.Lock()
	s.lastRestart[rtc.ConnPublish] = time.Now().Add(-restartMinGap)
	s.mu.Unlock()
	if _, err := s.restart(m); err != nil {
		t.Fatalf("a restart a second later: %v", err)
	}
}
