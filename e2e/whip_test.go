package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/hub/whip/whiptest"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/webrtc/v4"
)

// Tones of the WHEP viewers' microphones: one may talk, one may not.
const (
	whepTalkHz   = 1000.0
	whepSilentHz = 700.0
)

// whipEnv is the secure hub of startSecure with the keys the WHIP/WHEP tests use.
type whipEnv struct {
	*secure
	app       string
	talkKey   string // view and talk on porch
	lobbyKey  string // mints tokens for channel lobby only
	outside   *webrtc.API
	signalAPI *webrtc.API
}

func startWHIPEnv(t *testing.T) *whipEnv {
	t.Helper()
	s := startSecure(t, "embedded")
	e := &whipEnv{secure: s, app: hub.Defaults().Apps[0].ID}
	var err error
	e.talkKey, _, err = s.hub.Store().AddKey(auth.Key{Name: "whep-talk", Devices: []string{"porch"}, Actions: []string{auth.PermTalk}})
	must(t, err, "talk key")
	e.lobbyKey, _, err = s.hub.Store().AddKey(auth.Key{Name: "whip-lobby", Actions: []string{auth.ActionToken},
		Apps: []string{e.app}, Channels: []string{"lobby"}, MaxTTL: auth.Duration(time.Hour)})
	must(t, err, "lobby key")
	e.outside, err = whiptest.API()
	must(t, err, "outside client API")
	e.signalAPI, err = rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	must(t, err, "API")
	return e
}

func (e *whipEnv) token(t *testing.T, channel string, uid uint32, role string) string {
	t.Helper()
	cert, _ := e.hub.Certificate(e.app)
	tok, _, err := token.Mint(e.app, cert, channel, uid, role, time.Hour, time.Now())
	must(t, err, "mint")
	return tok
}

// sdk joins channel with the project's Go client (as the SDK and the device do).
func (e *whipEnv) sdk(ctx context.Context, t *testing.T, channel string, uid uint32) (*rtc.Client, *rtctest.EventLog) {
	t.Helper()
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: e.base, API: e.signalAPI, Logger: testLogger(t)})
	must(t, err, "dial")
	t.Cleanup(func() { c.Close() })
	log := rtctest.LogEvents(c)
	_, err = c.Join(ctx, e.app, channel, uid, e.token(t, channel, uid, token.RolePublisher))
	must(t, err, "join "+channel)
	return c, log
}

// speakerTone counts the 100 ms windows of porch's speaker output dominated by hz.
func (e *whipEnv) speakerTone(hz float64) int {
	samples, _, _, err := wav.ReadFile(e.speaker)
	if err != nil {
		return 0
	}
	return toneWindows(samples, hz)
}

// TestWHIPWHEP is issue 14's WHIP/WHEP check against a hub in its default (secure) mode: an
// outside WHIP publisher (a scoped key), an outside WHEP viewer (a token) that talks, and an
// SDK user in one channel see and hear each other; a WHEP viewer with a key makes the device
// join, watches it (first frame a keyframe) and talks to its speaker; DELETE ends each
// resource (user-left for the others, the device released); and every attack is refused with
// nothing happening.
func TestWHIPWHEP(t *testing.T) {
	if testing.Short() {
		t.Skip("a whole WHIP and WHEP session with a device and its attacks: not in -short")
	}
	e := startWHIPEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cases := 0

	t.Run("channel", func(t *testing.T) {
		sdk, events := e.sdk(ctx, t, "lobby", 1)
		if _, err := rtctest.PublishTone(ctx, sdk, 440); err != nil {
			t.Fatal(err)
		}
		pub, err := whiptest.Publish(ctx, e.outside, e.base+"/whip/"+e.app+"/lobby", e.lobbyKey, 660)
		must(t, err, "WHIP with the lobby key")
		pubUID := waitFor(ctx, t, events, "user-published video", func(m *rtc.Message) bool {
			return m.Event == rtc.EventUserPublished && m.Kind == rtc.KindVideo
		})
		view, err := whiptest.View(ctx, e.outside, e.base+"/whep/"+e.app+"/lobby", e.token(t, "lobby", 3, token.RolePublisher), 1, 2, whepTalkHz)
		must(t, err, "WHEP with a token")
		waitFor(ctx, t, events, "user-joined 3", isEvent(rtc.EventUserJoined, 3))
		waitFor(ctx, t, events, "user-published 3", isEvent(rtc.EventUserPublished, 3))
		vt, err := view.Next(ctx, webrtc.RTPCodecTypeVideo)
		must(t, err, "WHEP video")
		counters, idr, err := whiptest.Frames(ctx, vt, 20)
		must(t, err, "WHEP frames")
		cases++
		if !idr {
			t.Error("the WHEP viewer's first frame is not a keyframe")
		}
		heard := map[float64]bool{}
		for i := 0; i < 2; i++ {
			at, err := view.Next(ctx, webrtc.RTPCodecTypeAudio)
			must(t, err, "WHEP audio")
			f, err := whiptest.ToneOf(ctx, at)
			must(t, err, "WHEP tone")
			for _, want := range []float64{440, 660} {
				heard[want] = heard[want] || f > want-15 && f < want+15
			}
		}
		cases++
		if !heard[440] || !heard[660] {
			t.Errorf("the WHEP viewer heard %v, want the SDK user (440 Hz) and the WHIP publisher (660 Hz)", heard)
		}
		sv, err := sdk.Subscribe(ctx, pubUID, rtc.KindVideo)
		must(t, err, "SDK user subscribes to the WHIP video")
		_, _, err = whiptest.Frames(ctx, sv, 10)
		must(t, err, "SDK user's frames from WHIP")
		for uid, want := range map[uint32]float64{pubUID: 660, 3: whepTalkHz} {
			tr, err := sdk.Subscribe(ctx, uid, rtc.KindAudio)
			must(t, err, "SDK user subscribes to audio")
			f, err := whiptest.ToneOf(ctx, tr)
			must(t, err, "SDK user's tone")
			cases++
			if f < want-15 || f > want+15 {
				t.Errorf("the SDK user hears %.0f Hz from uid %d, want %.0f", f, uid, want)
			}
		}
		t.Logf("WHEP frames %d..%d; heard %v", counters[0], counters[len(counters)-1], heard)
		cases++
		if code := view.Close(); code != http.StatusOK {
			t.Errorf("DELETE the WHEP resource: %d", code)
		}
		waitFor(ctx, t, events, "user-left 3", isEvent(rtc.EventUserLeft, 3))
		cases++
		if code := pub.Close(); code != http.StatusOK {
			t.Errorf("DELETE the WHIP resource: %d", code)
		}
		waitFor(ctx, t, events, "user-left of the WHIP publisher", isEvent(rtc.EventUserLeft, pubUID))
	})

	t.Run("device", func(t *testing.T) {
		if st := e.deviceState("porch"); st != "idle " {
			t.Fatalf("porch before: %q", st)
		}
		start := time.Now()
		view, err := whiptest.View(ctx, e.outside, e.base+"/whep/devices/porch", e.talkKey, 1, 1, whepTalkHz)
		must(t, err, "WHEP the device with the talk key")
		t.Logf("POST /whep/devices/porch answered in %s (the device joined)", time.Since(start).Round(time.Millisecond))
		cases++
		if st := e.deviceState("porch"); st != "joined view-porch" {
			t.Errorf("porch after the WHEP POST: %q", st)
		}
		vt, err := view.Next(ctx, webrtc.RTPCodecTypeVideo)
		must(t, err, "the device's video")
		counters, idr, err := whiptest.Frames(ctx, vt, 20)
		must(t, err, "the device's frames")
		t.Logf("device video: first frame %s after the POST, counters %d..%d", time.Since(start).Round(time.Millisecond), counters[0], counters[len(counters)-1])
		cases++
		if !idr {
			t.Error("the first frame from the device is not a keyframe")
		}
		at, err := view.Next(ctx, webrtc.RTPCodecTypeAudio)
		must(t, err, "the device's audio")
		f, err := whiptest.ToneOf(ctx, at)
		must(t, err, "the device's tone")
		cases++
		if f < 425 || f > 455 {
			t.Errorf("the device's microphone sounds at %.0f Hz, want 440", f)
		}
		// The viewer talks: the device's speaker plays its tone.
		deadline := time.Now().Add(20 * time.Second)
		for e.speakerTone(whepTalkHz) < 10 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		cases++
		if n := e.speakerTone(whepTalkHz); n < 10 {
			t.Errorf("the device's speaker played the WHEP viewer's tone for %d×100 ms", n)
		}
		cases++
		if code := view.Close(); code != http.StatusOK {
			t.Errorf("DELETE: %d", code)
		}
		deadline = time.Now().Add(20 * time.Second)
		for e.deviceState("porch") != "idle " && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		cases++
		if st := e.deviceState("porch"); st != "idle " {
			t.Errorf("porch after its last WHEP viewer left: %q", st)
		}
	})

	t.Run("attacks", func(t *testing.T) {
		sdk, events := e.sdk(ctx, t, "lobby", 1)
		if _, err := rtctest.PublishTone(ctx, sdk, 440); err != nil {
			t.Fatal(err)
		}
		good, err := whiptest.View(ctx, e.outside, e.base+"/whep/"+e.app+"/lobby", e.token(t, "lobby", 2, token.RoleSubscriber), 0, 1, 0)
		must(t, err, "a good viewer")
		defer good.Close()
		goodAudio, err := good.Next(ctx, webrtc.RTPCodecTypeAudio)
		must(t, err, "the good viewer's audio")
		joins := e.hub.SFU().Stats().Joins
		lobby := e.base + "/whip/" + e.app + "/lobby"
		whepLobby := e.base + "/whep/" + e.app + "/lobby"
		forgedKey := e.lobbyKey[:len(e.lobbyKey)-2] + "AA"
		tok := e.token(t, "lobby", 9, token.RolePublisher)
		forgedTok := tok[:len(tok)-2] + "AA"
		for _, tc := range []struct {
			name   string
			run    func() error
			status int
		}{
			{"WHIP without a bearer", func() error { _, err := whiptest.Publish(ctx, e.outside, lobby, "", 300); return err }, 401},
			{"WHEP without a bearer", func() error { _, err := whiptest.View(ctx, e.outside, whepLobby, "", 1, 1, 0); return err }, 401},
			{"WHEP of the device without a bearer", func() error {
				_, err := whiptest.View(ctx, e.outside, e.base+"/whep/devices/porch", "", 1, 1, 0)
				return err
			}, 401},
			{"WHIP with a forged key", func() error { _, err := whiptest.Publish(ctx, e.outside, lobby, forgedKey, 300); return err }, 401},
			{"WHIP with a forged token", func() error { _, err := whiptest.Publish(ctx, e.outside, lobby, forgedTok, 300); return err }, 401},
			{"WHIP with a token for another channel", func() error {
				_, err := whiptest.Publish(ctx, e.outside, lobby, e.token(t, "elsewhere", 9, token.RolePublisher), 300)
				return err
			}, 403},
			{"WHIP with a key scoped to another channel", func() error {
				_, err := whiptest.Publish(ctx, e.outside, e.base+"/whip/"+e.app+"/elsewhere", e.lobbyKey, 300)
				return err
			}, 403},
			{"WHIP with a subscriber token", func() error {
				_, err := whiptest.Publish(ctx, e.outside, lobby, e.token(t, "lobby", 9, token.RoleSubscriber), 300)
				return err
			}, 403},
			{"WHIP with a key that may not mint tokens", func() error { _, err := whiptest.Publish(ctx, e.outside, lobby, e.talkKey, 300); return err }, 403},
			{"WHEP of another device with a key scoped to porch", func() error {
				_, err := whiptest.View(ctx, e.outside, e.base+"/whep/devices/garage", e.key, 1, 1, 0)
				return err
			}, 403},
			{"WHEP of the device with a token", func() error {
				_, err := whiptest.View(ctx, e.outside, e.base+"/whep/devices/porch", e.token(t, "view-porch", 9, token.RolePublisher), 1, 1, 0)
				return err
			}, 403},
			{"WHEP of the device with the lobby key", func() error {
				_, err := whiptest.View(ctx, e.outside, e.base+"/whep/devices/porch", e.lobbyKey, 1, 1, 0)
				return err
			}, 403},
		} {
			cases++
			if got := whiptest.StatusOf(tc.run()); got != tc.status {
				t.Errorf("%s: HTTP %d, want %d", tc.name, got, tc.status)
			}
		}
		for _, tc := range []struct {
			name, ctype, body string
			status            int
		}{
			{"garbage", "application/sdp", "\x16\x03\x01 not SDP at all", 400},
			{"oversized", "application/sdp", "v=0\r\n" + strings.Repeat("a=x:"+strings.Repeat("y", 1000)+"\r\n", 100), 413},
			{"JSON", "application/json", `{"sdp":"v=0"}`, 415},
		} {
			for _, path := range []string{"/whip/" + e.app + "/lobby", "/whep/" + e.app + "/lobby", "/whep/devices/porch"} {
				code, body, loc, err := whiptest.PostSDP(ctx, e.base+path, e.talkKey, tc.ctype, tc.body)
				must(t, err, "post")
				cases++
				if code != tc.status || loc != "" {
					t.Errorf("%s SDP to %s: HTTP %d (Location %q), want %d: %.200s", tc.name, path, code, loc, tc.status, body)
				}
			}
		}
		cases++
		if got := e.hub.SFU().Stats().Joins; got != joins {
			t.Errorf("refused requests joined: %d joins, before %d", got, joins)
		}
		if st := e.deviceState("garage"); st != "idle " {
			t.Errorf("garage after the attacks: %q", st)
		}
		if st := e.deviceState("porch"); st != "idle " {
			t.Errorf("porch after the attacks: %q", st)
		}
		if f, err := whiptest.ToneOf(ctx, goodAudio); err != nil || f < 425 || f > 455 {
			t.Errorf("the good viewer after the attacks: %.0f Hz, %v", f, err)
		}
		if events.Has(func(m *rtc.Message) bool { return m.Event == rtc.EventUserLeft }) {
			t.Error("someone left the lobby during the attacks")
		}

		// A key that may view porch but not talk offers to send audio: it watches, but its
		// audio is never published and the speaker never plays it.
		before := e.speakerTone(whepSilentHz)
		view, err := whiptest.View(ctx, e.outside, e.base+"/whep/devices/porch", e.key, 1, 1, whepSilentHz)
		must(t, err, "WHEP with the view-only key")
		defer view.Close()
		vt, err := view.Next(ctx, webrtc.RTPCodecTypeVideo)
		must(t, err, "view-only video")
		_, _, err = whiptest.Frames(ctx, vt, 10)
		must(t, err, "view-only frames")
		time.Sleep(3 * time.Second)
		cases++
		if n := e.speakerTone(whepSilentHz) - before; n > 0 {
			t.Errorf("the view-only key's tone played on the speaker for %d×100 ms", n)
		}
		cases++
		if a := view.PC.RemoteDescription().SDP; strings.Contains(a, "a=sendrecv") {
			t.Error("the hub answered the view-only viewer's audio as sendrecv")
		}
	})
	t.Logf("%d WHIP/WHEP cases", cases)
}

// waitFor waits for an event matching ok (seen before or from now on) and returns its uid.
func waitFor(ctx context.Context, t *testing.T, l *rtctest.EventLog, what string, ok func(*rtc.Message) bool) uint32 {
	t.Helper()
	m, err := l.Wait(ctx, what, ok)
	if err != nil {
		t.Fatal(err)
	}
	if m.UID != nil {
		return *m.UID
	}
	return 0
}

func isEvent(name string, uid uint32) func(*rtc.Message) bool { return rtctest.Is(name, uid, "") }

// TestWHEPBrowser: Chromium as a WHEP viewer through e2e/browser/whep.html (plain fetch +
// RTCPeerConnection, no SDK), with a key that may view and talk on porch: it sees the device's
// frame counter advance and hears its tone (whep.mjs), its fake microphone's tone plays on the
// device's speaker, and its DELETE releases the device.
func TestWHEPBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a headless browser: not in -short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the browser tests")
	}
	if _, err := os.Stat("browser/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed in e2e/browser: run `make test-deps`")
	}
	e := startWHIPEnv(t)
	cmd := exec.Command(node, "--test", "--test-reporter=spec", "whep.mjs")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(), "CAMAGENT_HUB_URL="+e.base, "CAMAGENT_DEVICE_ID=porch", "CAMAGENT_WHEP_KEY="+e.talkKey,
		fmt.Sprintf("CAMAGENT_DEVICE_TONE_HZ=%g", e.agentCfg.ToneHz))
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t.Log(l)
	}
	if err != nil {
		t.Fatalf("whep.mjs: %v", err)
	}
	n := e.speakerTone(browserTalkToneHz)
	t.Logf("device speaker: %.1f s of the browser's %.0f Hz", float64(n)/10, browserTalkToneHz)
	if n < 10 {
		t.Errorf("the WHEP browser's talk reached the speaker for %.1f s, want ≥ 1 s", float64(n)/10)
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.deviceState("porch") != "idle " && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if st := e.deviceState("porch"); st != "idle " {
		t.Errorf("porch after the browser's DELETE: %q", st)
	}
}
