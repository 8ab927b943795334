package sfu

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// TestTokenExpiryAndRenewal: a user is warned before its token expires; one that renews stays
// with its media flowing without a gap, one that does not is disconnected and the others are
// told why.
func TestTokenExpiryAndRenewal(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for tokens to expire: not in -short")
	}
	api, _ := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	svc := New(Options{API: api, Certificate: func(app string) (string, bool) { return testCert, app == "demo" },
		WillExpireBefore: 2 * time.Second})
	srv := httptest.NewServer(svc)
	defer func() { srv.Close(); svc.Close() }()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	join := func(uid uint32, ttl time.Duration) *rtc.Client {
		c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: url, API: api})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		tok, _, _ := token.Mint("demo", testCert, "short", uid, token.RolePublisher, ttl, time.Now())
		if _, err := c.Join(ctx, "demo", "short", uid, tok); err != nil {
			t.Fatal(err)
		}
		return c
	}

	// The renewer publishes audio (a packet every 20 ms); the watcher receives it.
	renewer := join(1, 3*time.Second)
	track, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "r")
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			}
		}
	}()
	if _, err := renewer.Publish(ctx, track); err != nil {
		t.Fatal(err)
	}
	watcher := join(2, time.Hour)
	remote, err := watcher.Subscribe(ctx, 1, rtc.KindAudio)
	if err != nil {
		t.Fatal(err)
	}
	var maxGap time.Duration
	var lastSeq uint16
	lost := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Now()
		for first := true; ; first = false {
			remote.SetReadDeadline(time.Now().Add(2 * time.Second))
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			if !first && pkt.SequenceNumber != lastSeq+1 {
				lost++
			}
			lastSeq = pkt.SequenceNumber
			if gap := time.Since(last); !first && gap > maxGap {
				maxGap = gap
			}
			last = time.Now()
		}
	}()

	// The short-lived one, who will not renew.
	quitter := join(3, 3*time.Second)

	var warned bool
	for m := range renewer.Events() {
		if m.Event == rtc.EventTokenWillExpire {
			warned = true
			tok, _, _ := token.Mint("demo", testCert, "short", 1, token.RolePublisher, time.Hour, time.Now())
			if _, err := renewer.RenewToken(ctx, tok); err != nil {
				t.Fatalf("renew: %v", err)
			}
			break
		}
	}
	if !warned {
		t.Fatal("no token-privilege-will-expire before expiry")
	}
	// A renewal for another uid is refused.
	other, _, _ := token.Mint("demo", testCert, "short", 9, token.RolePublisher, time.Hour, time.Now())
	if _, err := renewer.RenewToken(ctx, other); err == nil || !strings.Contains(err.Error(), rtc.CodeTokenWrongUID) {
		t.Errorf("renew with another uid's token: %v", err)
	}

	var expired bool
	for m := range quitter.Events() {
		if m.Event == rtc.EventTokenDidExpire {
			expired = true
		}
	}
	if !expired {
		t.Error("the user who did not renew got no token-privilege-did-expire")
	}
	var reason string
	deadline := time.After(5 * time.Second)
	for reason == "" {
		select {
		case m := <-watcher.Events():
			if m.Event == rtc.EventUserLeft && m.UID != nil && *m.UID == 3 {
				reason = m.Reason
			}
		case <-deadline:
			t.Fatal("no user-left for the expired user")
		}
	}
	if reason != "expired" {
		t.Errorf("user-left reason %q, want expired", reason)
	}
	// Past the renewer's original expiry: still there, media still flowing.
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-renewer.Done():
		t.Fatalf("the renewer was disconnected: %v", renewer.Err())
	default:
	}
	cancel()
	<-done
	t.Logf("renewal: %d packets lost, largest gap between packets %s", lost, maxGap.Round(time.Millisecond))
	if lost > 0 {
		t.Errorf("%d packets lost across the renewal", lost)
	}
	if maxGap > 500*time.Millisecond {
		t.Errorf("media stalled for %s across the renewal", maxGap)
	}
}
