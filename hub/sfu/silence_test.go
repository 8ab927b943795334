package sfu

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
)

// freezer is a TCP relay in front of the hub whose traffic the test can hold, both ways, as
// a network cut holds a TCP stream's segments: nothing arrives meanwhile and what was sent
// arrives once the hold ends. It never closes a connection by itself.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool // every connection, and the ones to come
	closed atomic.Bool // the test ended: held connections are dropped
	wg     sync.WaitGroup

	mu   sync.Mutex
	open []*atomic.Bool // each connection's own hold
}

// holdOpen holds the connections open now, for good; later ones flow.
func (f *freezer) holdOpen() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.open {
		h.Store(true)
	}
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() { ln.Close(); f.closed.Store(true); f.frozen.Store(false); f.wg.Wait() })
	return f
}

func (f *freezer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		held := new(atomic.Bool)
		f.mu.Lock()
		f.open = append(f.open, held)
		f.mu.Unlock()
		f.wg.Add(2)
		go f.pipe(up, c, held)
		go f.pipe(c, up, held)
	}
}

// pipe copies src to dst, holding each chunk while frozen or held.
func (f *freezer) pipe(dst, src net.Conn, held *atomic.Bool) {
	defer f.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for n > 0 && (f.frozen.Load() || held.Load()) {
			time.Sleep(5 * time.Millisecond)
			if f.closed.Load() {
				src.Close()
				return
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			return
		}
	}
}

// TestSilentSocketKeptForLiveMedia: a publisher's signalling socket held silent (a short cut
// whose TCP segments wait in the retransmission timer) while its media flows is kept at both
// ends past their silence limits, and the signalling works again once the hold ends; held past
// MaxSilent, or with the media path cut too, the client gives it up (rtc.ErrHubSilent).
func TestSilentSocketKeptForLiveMedia(t *testing.T) {
	if testing.Short() {
		t.Skip("holds signalling sockets silent for seconds: not in -short")
	}
	const (
		ping = 200 * time.Millisecond
		wait = time.Second // silence limit at both ends
	)
	svc, url := startTestService(t, Options{PingInterval: ping, PongWait: wait, MaxSilent: 4 * time.Second})
	hubAddr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/rtc")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	talker := func(uid uint32, maxSilent time.Duration) (*rtc.Client, *freezer, *rtctest.CutNet) {
		t.Helper()
		fr := newFreezer(t, hubAddr)
		n, err := rtctest.NewCutNet()
		if err != nil {
			t.Fatal(err)
		}
		api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true, Net: n})
		if err != nil {
			t.Fatal(err)
		}
		c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: "ws://" + fr.ln.Addr().String() + "/rtc", API: api,
			PingInterval: ping, ReadTimeout: wait, MaxSilent: maxSilent, RestartAfter: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		tok, _, _ := token.Mint("demo", testCert, "room", uid, token.RolePublisher, time.Hour, time.Now())
		if _, err := c.Join(ctx, "demo", "room", uid, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := rtctest.PublishTone(ctx, c, 440); err != nil {
			t.Fatal(err)
		}
		return c, fr, n
	}
	viewer := joinCuttable(ctx, t, url, 9, -1)
	events := rtctest.LogEvents(viewer.c)
	left := func(uid uint32) bool {
		return events.Find(func(m *rtc.Message) bool {
			return m.UID != nil && *m.UID == uid && (m.Event == rtc.EventUserLeft || m.Event == rtc.EventUserUnpublished)
		}) != nil
	}

	// 1. Held 3 s (three times either end's limit) with the media flowing: kept.
	a, fa, _ := talker(1, 4*time.Second)
	got := countRTP(viewer.c, ctx, t, 1)
	waitPackets(t, got, 25, 10*time.Second, "before the hold")
	fa.frozen.Store(true)
	during := waitPackets(t, got, 100, 10*time.Second, "while the signalling is held") // 2 s of audio
	time.Sleep(3*time.Second - during)
	fa.frozen.Store(false)
	if _, err := a.Subscribe(ctx, 9, rtc.KindVideo); err == nil || errors.Is(err, context.DeadlineExceeded) {
		// the viewer publishes nothing: the hub's refusal is the proof that the socket works
		t.Fatalf("a request after the hold: %v, want the hub's answer that uid 9 has no video", err)
	}
	select {
	case <-a.Done():
		t.Fatalf("the client gave its socket up though the media flowed: %v", a.Err())
	default:
	}
	if left(1) {
		t.Fatal("the viewer saw the held user leave or unpublish")
	}
	if users := svc.ChannelUsers("demo", "room"); len(users) != 2 {
		t.Fatalf("channel users %v after the hold, want [1 9]", users)
	}

	// 2. Held past MaxSilent: given up, however alive the media.
	b, fb, _ := talker(2, 2*time.Second)
	fb.frozen.Store(true)
	select {
	case <-b.Done():
		if !errors.Is(b.Err(), rtc.ErrHubSilent) {
			t.Fatalf("held past MaxSilent the client ended with %v, want ErrHubSilent", b.Err())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("held past MaxSilent (2 s), the client kept its socket for 15 s")
	}

	// 3. Held with the media path cut too: given up once the media is stale (3 s), long before
	// MaxSilent (30 s).
	c, fc, nc := talker(3, 30*time.Second)
	fc.frozen.Store(true)
	nc.Cut()
	start := time.Now()
	select {
	case <-c.Done():
		if !errors.Is(c.Err(), rtc.ErrHubSilent) {
			t.Fatalf("with the media cut the client ended with %v, want ErrHubSilent", c.Err())
		}
		t.Logf("media and signalling both silent: given up after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("with its media cut too, the client kept a silent socket for 15 s")
	}
}
