package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/whip/whiptest"
	"github.com/pion/webrtc/v4"
)

// go2rtcBinary is go2rtc built from the module proxy by tools/go2rtc.sh (once; later calls
// find the binary in .cache/go2rtc).
func go2rtcBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join("..", "tools", "go2rtc.sh")).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("build go2rtc (tools/go2rtc.sh): %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// go2rtcProc is a running go2rtc with its API on a loopback port.
type go2rtcProc struct {
	api string // http://127.0.0.1:port
}

// startGo2rtc runs go2rtc with streams (name → source URL) on loopback only: its API on a
// free port, WebRTC on random UDP ports of lo with no STUN server, RTSP and SRTP off. Its log
// goes to the test's log; it is killed when the test ends.
func startGo2rtc(t *testing.T, streams map[string]string) *go2rtcProc {
	t.Helper()
	bin := go2rtcBinary(t)
	addr := freeAddr(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "api:\n  listen: %q\n", addr)
	cfg.WriteString("rtsp:\n  listen: \"\"\nsrtp:\n  listen: \"\"\nrtmp:\n  listen: \"\"\n")
	cfg.WriteString("webrtc:\n  listen: \"\"\n  ice_servers: []\n  filters:\n    loopback: true\n    interfaces: [lo]\n    networks: [udp4]\n")
	cfg.WriteString("log:\n  format: text\n  level: info\nstreams:\n")
	for name, src := range streams {
		fmt.Fprintf(&cfg, "  %s: %q\n", name, src)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "go2rtc.yaml")
	must(t, os.WriteFile(path, []byte(cfg.String()), 0o600), "write go2rtc.yaml")

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-config", path)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	must(t, cmd.Start(), "start go2rtc")
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t.Logf("go2rtc: %s", sc.Text())
		}
	}()
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		pw.Close()
		<-logged
	})
	g := &go2rtcProc{api: "http://" + addr}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(g.api + "/api")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("go2rtc's API at %s did not answer within 20 s: %v", g.api, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamInfo is go2rtc's account of a stream (producers, consumers, bytes), for a failure's log.
func (g *go2rtcProc) streamInfo(stream string) string {
	resp, err := http.Get(g.api + "/api/streams?src=" + stream)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	return string(b)
}

// go2rtcCounters is the frame counters of the access units that kept them, and the number
// of IDRs among aus.
func go2rtcCounters(aus [][]byte) (counters []uint64, idrs int) {
	for _, au := range aus {
		if h264.IsKeyframe(au) {
			idrs++
		}
		if c, _, ok := h264.ParseFrameInfo(au); ok {
			counters = append(counters, c)
		}
	}
	return counters, idrs
}

// whep is go2rtc's WHEP route for one of its streams.
func (g *go2rtcProc) whep(stream string) string { return g.api + "/api/webrtc?src=" + stream }

// TestGo2rtc is docs/homeassistant.md's live picture with go2rtc itself (v1.9.9, the engine of
// Home Assistant's WebRTC cameras) as the hub's WHEP client, configured as the doc says: a
// stream whose source is the hub's /whep/devices/porch with a view-only API key as the URL's
// password. A viewer of go2rtc's stream sees porch's moving picture and hears its tone; two
// viewers of go2rtc make one join at the hub; when go2rtc's last viewer leaves, go2rtc closes
// its connection and the hub releases the device. go2rtc streams with a forged key, a key of
// another device or no credential get no picture, and nothing joins at the hub.
func TestGo2rtc(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: go2rtc is built and run (11 s)")
	}
	e := startWHIPEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	garageKey, _, err := e.hub.Store().AddKey(auth.Key{Name: "garage-view", Devices: []string{"garage"}, Actions: []string{auth.PermView}})
	must(t, err, "garage key")
	host := strings.TrimPrefix(e.base, "http://")
	source := func(userinfo string) string {
		return "webrtc:http://" + userinfo + host + "/whep/devices/porch"
	}
	g := startGo2rtc(t, map[string]string{
		"porch":        source("homeassistant:" + e.key + "@"),
		"forged":       source("homeassistant:cam_k_00000000_" + strings.Repeat("A", 43) + "@"),
		"garagekey":    source("homeassistant:" + garageKey + "@"),
		"nocredential": source(""),
	})

	joins := e.hub.SFU().Stats().Joins
	start := time.Now()
	first, err := whiptest.ViewNoLocation(ctx, e.outside, g.whep("porch"), 1, 1)
	must(t, err, "WHEP to go2rtc's porch stream")
	defer first.PC.Close()
	vt, err := first.Next(ctx, webrtc.RTPCodecTypeVideo)
	if err != nil {
		t.Logf("go2rtc's view of porch: %s", g.streamInfo("porch"))
	}
	must(t, err, "porch's video through go2rtc")
	// go2rtc drops an access unit's leading SEI unless an SPS comes before it, so only the
	// IDRs (every 2 s) keep the frame counter: the picture moves if the IDRs' counters advance.
	aus, err := whiptest.AccessUnits(ctx, vt, 100)
	must(t, err, "porch's access units through go2rtc")
	counters, idrs := go2rtcCounters(aus)
	t.Logf("through go2rtc: %d access units (%d IDRs, counters %v, first an IDR: %v) within %s of the viewer's POST",
		len(aus), idrs, counters, h264.IsKeyframe(aus[0]), time.Since(start).Round(time.Millisecond))
	if !h264.IsKeyframe(aus[0]) {
		t.Errorf("the first access unit through go2rtc is not an IDR")
	}
	if len(counters) < 2 || counters[len(counters)-1] <= counters[0] {
		t.Errorf("porch's frame counter does not advance through go2rtc: %v", counters)
	}
	at, err := first.Next(ctx, webrtc.RTPCodecTypeAudio)
	must(t, err, "porch's audio through go2rtc")
	if f, err := whiptest.ToneOf(ctx, at); err != nil || f < 425 || f > 455 {
		t.Errorf("porch's tone through go2rtc: %.0f Hz, %v (want 440)", f, err)
	}
	if s := e.deviceState("porch"); !strings.HasPrefix(s, "joined ") {
		t.Errorf("porch is %q while go2rtc watches it", s)
	}

	// A second viewer of the same go2rtc stream shares go2rtc's one connection to the hub
	// (the joins so far: go2rtc's and the device's).
	joins = e.hub.SFU().Stats().Joins
	second, err := whiptest.ViewNoLocation(ctx, e.outside, g.whep("porch"), 1, 1)
	must(t, err, "a second WHEP viewer of go2rtc")
	vt2, err := second.Next(ctx, webrtc.RTPCodecTypeVideo)
	must(t, err, "the second viewer's video")
	// go2rtc gives a viewer that joins its running stream what comes next (it asks its
	// source for no keyframe), so this one's picture starts at go2rtc's next IDR.
	aus2, err := whiptest.AccessUnits(ctx, vt2, 20)
	must(t, err, "the second viewer's access units")
	_, idrs2 := go2rtcCounters(aus2)
	t.Logf("go2rtc's second viewer: %d access units, %d IDRs, the first an IDR: %v", len(aus2), idrs2, h264.IsKeyframe(aus2[0]))
	if n := e.hub.SFU().Stats().Joins - joins; n != 0 {
		t.Errorf("go2rtc's second viewer made %d more joins at the hub, want none (it shares go2rtc's connection)", n)
	}

	// go2rtc stops its source when its last viewer leaves; the hub then releases porch.
	second.PC.Close()
	first.PC.Close()
	took := e.waitIdle("porch", "go2rtc's last viewer left", time.Now())
	t.Logf("porch released %s after go2rtc's last viewer left", took.Round(100*time.Millisecond))

	// The refused sources: go2rtc gets no answer it can use, so its viewer gets an error and no
	// media, and the hub's channels stay as they were.
	joins = e.hub.SFU().Stats().Joins
	for _, stream := range []string{"forged", "garagekey", "nocredential"} {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		v, err := whiptest.ViewNoLocation(cctx, e.outside, g.whep(stream), 1, 1)
		if err == nil {
			if tr, terr := v.Next(cctx, webrtc.RTPCodecTypeVideo); terr == nil {
				t.Errorf("go2rtc's %s stream delivered porch's video track %s", stream, tr.ID())
			}
			v.PC.Close()
		} else {
			t.Logf("go2rtc's %s stream refused: %v", stream, err)
		}
		ccancel()
	}
	time.Sleep(300 * time.Millisecond)
	if j := e.hub.SFU().Stats().Joins; j != joins || e.deviceState("porch") != "idle " {
		t.Errorf("after go2rtc's refused sources: %d joins, porch %q", j-joins, e.deviceState("porch"))
	}
}
