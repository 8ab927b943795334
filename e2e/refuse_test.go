package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
)

// TestRefusedJoins: joins the token does not allow are refused with a precise reason — to the
// device (its MQTT reply) and to a client (the join's error) — and the users already in the
// channel keep their session and their media.
func TestRefusedJoins(t *testing.T) {
	s := startSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const channel = "guarded"

	// Two users already talking: 8 publishes a tone, 7 listens to it.
	listener, _ := s.joinClient(ctx, channel, 7)
	talker, _ := s.joinClient(ctx, channel, 8)
	_, err := rtctest.PublishTone(ctx, talker, 600)
	must(t, err, "publish tone")
	waitPublished(ctx, t, listener, 8, rtc.KindAudio)
	track, err := listener.Subscribe(ctx, 8, rtc.KindAudio)
	must(t, err, "subscribe")
	heard := collectAudio(ctx, track)

	devUID := s.agentCfg.DefaultUID()
	now := time.Now()
	cases := []struct {
		name, token, want string
	}{
		{"expired", s.mint(channel, devUID, token.RolePublisher, time.Minute, now.Add(-2*time.Minute)), rtc.CodeTokenExpired},
		{"other channel", s.mint("elsewhere", devUID, token.RolePublisher, time.Hour, now), rtc.CodeTokenWrongChannel},
		{"other uid", s.mint(channel, devUID+1, token.RolePublisher, time.Hour, now), rtc.CodeTokenWrongUID},
		{"bad signature", forge(s.mint(channel, devUID, token.RolePublisher, time.Hour, now)), rtc.CodeTokenInvalid},
		{"garbage", "not-a-token", rtc.CodeTokenInvalid},
	}
	for _, tc := range cases {
		r := s.command(map[string]any{"action": "join", "channel": channel, "token": tc.token})
		if r.OK || !strings.Contains(r.Error, tc.want) {
			t.Errorf("device join with %s token: reply %+v, want ok:false with %s", tc.name, r, tc.want)
		} else {
			t.Logf("device join with %s token: %q", tc.name, r.Error)
		}
		if r.State.State != "error" {
			t.Errorf("device state after refused join = %q, want error", r.State.State)
		}
	}
	// Clients: the same refusals, plus no token at all.
	cases = append(cases, struct{ name, token, want string }{"missing", "", rtc.CodeTokenMissing})
	for _, tc := range cases {
		c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: s.baseURL, API: s.api})
		must(t, err, "dial")
		_, err = c.Join(ctx, "demo", channel, devUID, tc.token)
		var pe *rtc.Error
		if !errors.As(err, &pe) || pe.Code != tc.want {
			t.Errorf("client join with %s token: %v, want %s", tc.name, err, tc.want)
		}
		c.Close()
	}

	// The two users are still there, and media still flows between them.
	if got := s.hub.SFU().ChannelUsers("demo", channel); len(got) != 2 || got[0] != 7 || got[1] != 8 {
		t.Errorf("channel users = %v, want [7 8]", got)
	}
	before := len(heard())
	time.Sleep(500 * time.Millisecond)
	if after := len(heard()); after-before < 48000/4 {
		t.Errorf("listener's audio stalled after the refused joins: %d new samples in 0.5 s", after-before)
	}
	select {
	case <-listener.Done():
		t.Errorf("listener was disconnected: %v", listener.Err())
	default:
	}
	// And the device recovers with a good join.
	if r := s.command(map[string]any{"action": "join", "channel": channel}); !r.OK {
		t.Errorf("device join with its own token after refusals: %+v", r)
	}
}

// forge extends a token's expiry by a day, keeping its signature.
func forge(tok string) string {
	payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, "cam1."), ".")
	body, _ := base64.RawURLEncoding.DecodeString(payload)
	var claims map[string]any
	json.Unmarshal(body, &claims)
	claims["exp"] = claims["exp"].(float64) + 86400
	body, _ = json.Marshal(claims)
	return "cam1." + base64.RawURLEncoding.EncodeToString(body) + "." + sig
}

// TestExpiredCommandTokenEndsCall: a join command's own token that expires mid-call (the hub
// ends the session) is not retried: the agent's rejoin is refused once (TOKEN_EXPIRED) and the
// call ends with an error state saying so, its devices closed; the hub sees no more attempts.
func TestExpiredCommandTokenEndsCall(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a token to expire: not in -short")
	}
	s := startSystem(t)
	const channel = "short-lived"
	ttl := 3 * time.Second
	tok := s.mint(channel, s.agentCfg.DefaultUID(), token.RolePublisher, ttl, time.Now())
	if r := s.command(map[string]any{"action": "join", "channel": channel, "token": tok}); !r.OK {
		t.Fatalf("join with a %v token: %+v", ttl, r)
	}
	refused := s.hub.SFU().Stats().Refused
	deadline := time.Now().Add(ttl + 20*time.Second)
	var st deviceReply
	for {
		st = s.command(map[string]any{"action": "status"})
		if st.State.State == "error" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %+v %v after the token expired, want error", st.State, ttl+20*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(st.State.Error, rtc.CodeTokenExpired) || !strings.Contains(st.State.Error, "call ended") {
		t.Fatalf("state error %q, want the hub's TOKEN_EXPIRED and that the call ended", st.State.Error)
	}
	// The back-off would have tried again within 0.5, 1 and 2 s: nothing comes.
	time.Sleep(4 * time.Second)
	if n := s.hub.SFU().Stats().Refused - refused; n != 1 {
		t.Fatalf("the hub refused %d joins after the token expired, want exactly the one rejoin", n)
	}
	if users := s.hub.SFU().ChannelUsers("demo", channel); len(users) != 0 {
		t.Fatalf("channel users %v, want none", users)
	}
	if st = s.command(map[string]any{"action": "status"}); st.State.State != "error" {
		t.Fatalf("state %+v later, want still error", st.State)
	}
	// A fresh join works.
	if r := s.command(map[string]any{"action": "join", "channel": channel}); !r.OK {
		t.Fatalf("join with the device's own token after: %+v", r)
	}
}
