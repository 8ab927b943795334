package e2e

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/token"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// snapshotAnswer is what GET …/snapshot.jpg returned.
type snapshotAnswer struct {
	status       int
	contentType  string
	cacheControl string
	body         []byte
}

// isJPEG reports whether any of the answer is a picture.
func (a snapshotAnswer) isJPEG() bool {
	return strings.HasPrefix(a.contentType, "image/") || bytes.Contains(a.body, []byte{0xff, 0xd8, 0xff})
}

// snapshot GETs path with b's credentials.
func (b *browser) snapshot(path string) snapshotAnswer {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.base+path, nil)
	if err != nil {
		return snapshotAnswer{status: -1} // a path net/http refuses to send is refused too
	}
	if b.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+b.bearer)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return snapshotAnswer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), body}
}

// syntheticPicture decodes a snapshot of the synthetic camera and checks it against the
// picture synth.Render draws for the counter and capture time its strips carry: it returns
// the counter, the capture time (the strip's 32 bits of Unix milliseconds, placed near now)
// and the mean luma difference from the rendered picture.
func syntheticPicture(t *testing.T, jpegBytes []byte, w, h int) (uint32, time.Time, float64) {
	t.Helper()
	img, err := jpeg.Decode(bytes.NewReader(jpegBytes))
	if err != nil {
		t.Fatalf("snapshot.jpg does not decode: %v", err)
	}
	ycc, ok := img.(*image.YCbCr)
	if !ok || img.Bounds().Dx() != w || img.Bounds().Dy() != h {
		t.Fatalf("snapshot.jpg is a %T of %v, want %dx%d YCbCr", img, img.Bounds(), w, h)
	}
	counter, ms := synth.ReadCounterStrip(ycc.Y, ycc.YStride)
	now := time.Now().UnixMilli()
	at := now&^(1<<32-1) | int64(ms)
	if at > now {
		at -= 1 << 32
	}
	capture := time.UnixMilli(at)
	want := h264.NewFrame(w, h)
	synth.Render(want, uint64(counter), capture)
	var diff int
	for row := range h {
		got, ref := ycc.Y[row*ycc.YStride:][:w], want.Y[row*w:][:w]
		for x := range got {
			diff += max(int(got[x])-int(ref[x]), int(ref[x])-int(got[x]))
		}
	}
	return counter, capture, float64(diff) / float64(w*h)
}

// snapshotAttacks is TestSecurity's snapshot part: GET /api/devices/porch/snapshot.jpg gives
// the viewers of porch its picture and nobody else a byte of it, and no refused request
// (?fresh=1 above all) makes a snapshot command reach porch. It returns its case count.
func snapshotAttacks(t *testing.T, s *secure) (cases int) {
	const path = "/api/devices/porch/snapshot.jpg"
	// What reaches porch: its cmd topic, read with the MQTT key scoped to porch.
	watcher, err := s.mqttConnect("snapshot-watcher", s.mqttKeyID, s.mqttKey)
	must(t, err, "MQTT key connects")
	defer watcher.Disconnect(0)
	var commands atomic.Int32
	if tok := watcher.Subscribe("camagent/porch/cmd", 1, func(_ mqtt.Client, m mqtt.Message) {
		if strings.Contains(string(m.Payload()), `"snapshot"`) {
			commands.Add(1)
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watch porch's commands: %v", tok.Error())
	}

	// The admin asks for a fresh one: the synthetic camera's picture of that moment.
	admin := s.login("admin", "admin-password")
	sent := time.Now()
	a := admin.snapshot(path + "?fresh=1")
	cases++
	if a.status != 200 || a.contentType != "image/jpeg" || a.cacheControl != "no-store" {
		t.Fatalf("admin's fresh snapshot: HTTP %d %q %q %s", a.status, a.contentType, a.cacheControl, a.body)
	}
	counter, capture, diff := syntheticPicture(t, a.body, s.agentCfg.Width, s.agentCfg.Height)
	t.Logf("fresh snapshot: %d bytes in %v, frame %d captured %v after the request, mean luma difference %.2f from the rendered frame",
		len(a.body), time.Since(sent).Round(time.Millisecond), counter, capture.Sub(sent).Round(time.Millisecond), diff)
	cases += 2
	if capture.Before(sent.Add(-time.Second)) || capture.After(time.Now()) {
		t.Errorf("the fresh snapshot was captured at %v, the request sent at %v", capture, sent)
	}
	if diff > 3 {
		t.Errorf("the snapshot is not frame %d's picture: mean luma difference %.2f", counter, diff)
	}
	cases++
	if n := commands.Load(); n != 1 {
		t.Errorf("one fresh request sent porch %d snapshot commands", n)
	}

	// Everyone who may view porch gets those bytes: a guest, a key with view, a view token.
	var cfg struct{ AppID string }
	admin.do("GET", "/api/config", nil, &cfg)
	cert, _ := s.hub.Certificate(cfg.AppID)
	mintFor := func(channel string, privs []string, ttl time.Duration, now time.Time, cert string) string {
		tok, _, err := token.MintPrivileges(cfg.AppID, cert, channel, 123456, privs, ttl, now)
		must(t, err, "mint")
		return tok
	}
	viewer := []string{token.PrivJoin, token.PrivSubscribe}
	viewTok := s.client()
	viewTok.bearer = mintFor(hub.ViewChannel("porch"), viewer, time.Hour, time.Now(), cert)
	key := s.client()
	key.bearer = s.key
	for who, b := range map[string]*browser{"admin": admin, "guest": s.login("guest", "guest-password"), "view key": key, "view token": viewTok} {
		got := b.snapshot(path)
		cases++
		if got.status != 200 || !bytes.Equal(got.body, a.body) {
			t.Errorf("%s: HTTP %d, %d bytes (want the %d of the snapshot)", who, got.status, len(got.body), len(a.body))
		}
	}

	// The attackers.
	st := s.hub.Store()
	add := func(name string, devices, actions []string) *browser {
		text, _, err := st.AddKey(auth.Key{Name: name, Devices: devices, Actions: actions})
		must(t, err, "add key "+name)
		b := s.client()
		b.bearer = text
		return b
	}
	must(t, st.AddUser("talker", "talker-password", false, map[string][]string{"porch": {auth.PermTalk}, "garage": {auth.PermView}}), "add talker")
	bearer := func(text string) *browser { b := s.client(); b.bearer = text; return b }
	expired := time.Now().Add(-2 * time.Hour)
	long, _ := token.Sign(token.Claims{AppID: cfg.AppID, Channel: hub.ViewChannel("porch"), UID: 123456, Privileges: viewer,
		ExpiresAt: time.Now().Add(48 * time.Hour).Unix()}, cert)
	attackers := []struct {
		who  string
		b    *browser
		want int
	}{
		{"anonymous", s.client(), 401},
		{"forged key", bearer("cam_k_00000000_" + strings.Repeat("A", 43)), 401},
		{"key with a changed secret", bearer(s.key[:len(s.key)-2] + "AA"), 401},
		{"garage's key", add("garage-viewer", []string{"garage"}, []string{auth.PermView, auth.PermTalk, auth.PermCommand}), 403},
		{"view-less key", add("porch-commands", []string{"porch"}, []string{"status", "snapshot", "privacy"}), 403},
		{"talk-only person", s.login("talker", "talker-password"), 403},
		{"porch's own device credential", bearer(s.creds["porch"]), 403},
		{"garage's device credential", bearer(s.creds["garage"]), 403},
		{"forged token", bearer(mintFor(hub.ViewChannel("porch"), viewer, time.Hour, time.Now(), "not-the-certificate")), 401},
		{"expired token", bearer(mintFor(hub.ViewChannel("porch"), viewer, time.Hour, expired, cert)), 401},
		{"token for 48 h", bearer(long), 401},
		{"join-only token", bearer(mintFor(hub.ViewChannel("porch"), []string{token.PrivJoin}, time.Hour, time.Now(), cert)), 401},
		{"garage's view token", bearer(mintFor(hub.ViewChannel("garage"), viewer, time.Hour, time.Now(), cert)), 403},
		{"token for channel porch", bearer(mintFor("porch", viewer, time.Hour, time.Now(), cert)), 403},
		{"token with a changed signature", bearer(viewTok.bearer[:len(viewTok.bearer)-2] + "AA"), 401},
	}
	for _, at := range attackers {
		for _, q := range []string{"", "?fresh=1"} {
			got := at.b.snapshot(path + q)
			cases++
			if got.status != at.want || got.isJPEG() {
				t.Errorf("%s%s: HTTP %d %q (%d bytes), want %d and no picture", at.who, q, got.status, got.contentType, len(got.body), at.want)
			}
		}
	}
	// Odd ids and traversal, by the guest (may view porch only) and the admin.
	guest := s.login("guest", "guest-password")
	for _, p := range []string{
		"/api/devices/porch/../garage/snapshot.jpg", "/api/devices/%2e%2e/garage/snapshot.jpg", "/api/devices/..%2fgarage/snapshot.jpg",
		"/api/devices/porch%2F..%2Fgarage/snapshot.jpg", "/api/devices/garage%00/snapshot.jpg", "/api/devices/%2B/snapshot.jpg",
		"/api/devices/%23/snapshot.jpg", "/api/devices/*/snapshot.jpg", "/api/devices/porch/snapshot.jpg/../../garage/snapshot.jpg",
	} {
		got := guest.snapshot(p + "?fresh=1")
		cases++
		if got.status == 200 || got.isJPEG() {
			t.Errorf("guest GET %s: HTTP %d, %d bytes", p, got.status, len(got.body))
		}
	}
	for p, want := range map[string]int{
		"/api/devices/%2B/snapshot.jpg": 400, "/api/devices/%23/snapshot.jpg": 400, "/api/devices/a%2Fb/snapshot.jpg": 400,
		"/api/devices/%2A/snapshot.jpg": 400, "/api/devices/" + strings.Repeat("x", 65) + "/snapshot.jpg": 400,
		"/api/devices/nobody/snapshot.jpg": 404, "/api/devices/nobody/snapshot.jpg?fresh=1": 503,
		path + "?fresh=yes": 400,
	} {
		got := admin.snapshot(p)
		cases++
		if got.status != want || got.isJPEG() {
			t.Errorf("admin GET %s: HTTP %d, want %d", p, got.status, want)
		}
	}

	// A flood of fresh requests by those who may not: nothing reaches porch.
	var wg sync.WaitGroup
	var allowed atomic.Int32
	for i := range 48 {
		at := attackers[i%len(attackers)]
		wg.Go(func() {
			if got := at.b.snapshot(path + "?fresh=1"); got.status == 200 || got.isJPEG() {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // a command would be on the broker by now
	cases += 2
	if n := allowed.Load(); n != 0 {
		t.Errorf("%d of 48 unauthorised fresh requests got a picture", n)
	}
	if n := commands.Load(); n != 1 {
		t.Errorf("after the attacks porch got %d snapshot commands, want only the admin's 1", n)
	}

	// The viewers' own flood: twenty at once share one command.
	time.Sleep(1100 * time.Millisecond) // the last snapshot is no longer fresh
	var ok atomic.Int32
	for range 20 {
		wg.Go(func() {
			if got := guest.snapshot(path + "?fresh=1"); got.status == 200 && got.contentType == "image/jpeg" {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	cases++
	if n := commands.Load() - 1; ok.Load() != 20 || n < 1 || n > 3 {
		t.Errorf("20 fresh requests at once: %d pictures, %d snapshot commands", ok.Load(), n)
	} else {
		t.Logf("20 concurrent fresh requests: %d snapshot command(s)", n)
	}

	// Privacy mode clears the hub's copy and refuses fresh ones; off, snapshots work again.
	privacy := func(on bool) {
		t.Helper()
		var rep deviceReply
		if admin.do("POST", "/api/devices/porch/cmd", map[string]any{"action": "privacy", "on": on}, &rep) != 200 || !rep.OK {
			t.Fatalf("privacy %v: %+v", on, rep)
		}
	}
	privacy(true)
	defer privacy(false)
	for deadline := time.Now().Add(5 * time.Second); admin.snapshot(path).status != 404; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the hub still serves porch's snapshot in privacy mode")
		}
	}
	got := admin.snapshot(path + "?fresh=1")
	cases += 2
	if got.status != http.StatusConflict || got.isJPEG() || !strings.Contains(string(got.body), "privacy mode is on") {
		t.Errorf("fresh snapshot in privacy mode: HTTP %d %s", got.status, got.body)
	}
	privacy(false)
	if got := admin.snapshot(path + "?fresh=1"); got.status != 200 {
		t.Errorf("fresh snapshot after privacy off: HTTP %d %s", got.status, got.body)
	}
	return cases
}

// mqttConnect logs in to the suite's broker (over TLS when it is the embedded one's TLS
// listener) and returns the client, or the login's error.
func (s *secure) mqttConnect(id, user, pw string) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker(s.brokerURL).SetClientID(id).SetUsername(user).SetPassword(pw).SetConnectRetry(false).SetAutoReconnect(false)
	if s.brokerTLS != nil {
		o.SetTLSConfig(s.brokerTLS)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return c, context.DeadlineExceeded
	}
	return c, tok.Error()
}
