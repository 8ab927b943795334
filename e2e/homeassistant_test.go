package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/hub/whip/whiptest"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
)

// TestHomeAssistantWHEP is docs/homeassistant.md's live picture: go2rtc's WHEP source (what
// Home Assistant runs) POSTs a complete offer with video and audio recvonly to the URL it is
// given, with the URL's user info as HTTP Basic and no other header, and never sends DELETE.
// With an API key as that password it watches porch (the device joins, frames advance from
// a keyframe, the tone plays) and the device is released once the viewer is gone; Basic with
// anything but a key that may view porch, or from a browser, is refused and nothing joins.
func TestHomeAssistantWHEP(t *testing.T) {
	e := startWHIPEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	withUser := func(user, pass, path string) string {
		u, err := url.Parse(e.base + path)
		must(t, err, "URL")
		u.User = url.UserPassword(user, pass)
		return u.String()
	}
	porch := withUser("homeassistant", e.key, "/whep/devices/porch")

	start := time.Now()
	view, err := whiptest.View(ctx, e.outside, porch, "", 1, 1, 0)
	must(t, err, "WHEP porch as go2rtc does, the key as a Basic password")
	vt, err := view.Next(ctx, webrtc.RTPCodecTypeVideo)
	must(t, err, "porch's video")
	counters, idr, err := whiptest.Frames(ctx, vt, 20)
	must(t, err, "porch's frames")
	t.Logf("go2rtc-style viewer: %d frames (counters %d..%d) within %s of the POST", len(counters), counters[0], counters[len(counters)-1], time.Since(start).Round(time.Millisecond))
	if !idr || counters[len(counters)-1] <= counters[0] {
		t.Errorf("frames %v, first a keyframe: %v", counters, idr)
	}
	at, err := view.Next(ctx, webrtc.RTPCodecTypeAudio)
	must(t, err, "porch's audio")
	if f, err := whiptest.ToneOf(ctx, at); err != nil || f < 425 || f > 455 {
		t.Errorf("porch's tone: %.0f Hz, %v", f, err)
	}
	// go2rtc stops a source by closing its connection, without DELETE.
	view.PC.Close()
	took := e.waitIdle("porch", "its only viewer closed its connection", time.Now())
	t.Logf("porch released %s after the viewer closed its connection without DELETE", took.Round(100*time.Millisecond))

	// The refusals, with a real offer (the hub reads it before the credential).
	offer := recvOffer(t, e.outside)
	garageKey, _, err := e.hub.Store().AddKey(auth.Key{Name: "garage-view", Devices: []string{"garage"}, Actions: []string{auth.PermView}})
	must(t, err, "garage key")
	viewTok := e.token(t, "view-porch", 5, token.RoleSubscriber)
	joins := e.hub.SFU().Stats().Joins
	for _, c := range []struct {
		what, url string
		header    map[string]string
		want      int
	}{
		{"a forged key", withUser("ha", "cam_k_00000000_"+strings.Repeat("A", 43), "/whep/devices/porch"), nil, 401},
		{"a key of garage", withUser("ha", garageKey, "/whep/devices/porch"), nil, 403},
		{"porch's device credential", withUser("porch", e.creds["porch"], "/whep/devices/porch"), nil, 401},
		{"a view token", withUser("ha", viewTok, "/whep/devices/porch"), nil, 401},
		{"the key, from a browser", porch, map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "cross-site"}, 401},
		{"the key on the command route", withUser("ha", e.key, "/api/devices/porch/cmd"), nil, 401},
	} {
		body, ctype := offer, "application/sdp"
		if strings.HasSuffix(c.url, "/cmd") {
			body, ctype = `{"action":"status"}`, "application/json"
		}
		req, _ := http.NewRequest("POST", c.url, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err, c.what)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Basic with %s: HTTP %d, want %d", c.what, resp.StatusCode, c.want)
		}
	}
	// The snapshot route takes the key the same way (Home Assistant's generic camera).
	for _, c := range []struct {
		what, pass string
		browser    bool
		want       int
	}{{"the view key", e.key, false, 200}, {"the view key from a browser", e.key, true, 401}, {"a key of garage", garageKey, false, 403}} {
		req, _ := http.NewRequest("GET", withUser("ha", c.pass, "/api/devices/porch/snapshot.jpg?fresh=1"), nil)
		if c.browser {
			req.Header.Set("Sec-Fetch-Mode", "no-cors")
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err, c.what)
		resp.Body.Close()
		if resp.StatusCode != c.want || (c.want == 200) != (resp.Header.Get("Content-Type") == "image/jpeg") {
			t.Errorf("snapshot.jpg with %s as Basic: HTTP %d %s, want %d", c.what, resp.StatusCode, resp.Header.Get("Content-Type"), c.want)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if j := e.hub.SFU().Stats().Joins; j != joins || e.deviceState("porch") != "idle " {
		t.Errorf("after the refused requests: %d joins, porch %q", j-joins, e.deviceState("porch"))
	}
}

// recvOffer is a complete offer receiving video and audio, as go2rtc's WHEP source makes.
func recvOffer(t *testing.T, api *webrtc.API) string {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	must(t, err, "peer connection")
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		_, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		must(t, err, "transceiver")
	}
	offer, err := peer.Offer(context.Background(), pc, nil, peer.Gathering{})
	must(t, err, "offer")
	return offer
}
