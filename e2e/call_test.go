package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/opus"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// waitPublished waits until uid has published every kind in kinds.
func waitPublished(ctx context.Context, t *testing.T, c *rtc.Client, uid uint32, kinds ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	for len(want) > 0 {
		select {
		case m, ok := <-c.Events():
			if !ok {
				t.Fatalf("client ended while waiting for user %d to publish: %v", uid, c.Err())
			}
			if m.Event == rtc.EventUserPublished && m.UID != nil && *m.UID == uid {
				delete(want, m.Kind)
			}
		case <-ctx.Done():
			t.Fatalf("user %d did not publish %v", uid, want)
		}
	}
}

// accessUnits reassembles H.264 access units from a track's RTP packets (marker bit ends one);
// it reports sequence gaps.
func accessUnits(ctx context.Context, track *webrtc.TrackRemote, n int) (aus [][]byte, gaps int, err error) {
	var (
		depack codecs.H264Packet
		cur    []byte
		last   uint16
		first  = true
	)
	for len(aus) < n {
		if ctx.Err() != nil {
			return aus, gaps, ctx.Err()
		}
		track.SetReadDeadline(time.Now().Add(5 * time.Second))
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return aus, gaps, err
		}
		if !first && pkt.SequenceNumber != last+1 {
			gaps++
		}
		first, last = false, pkt.SequenceNumber
		payload, err := depack.Unmarshal(pkt.Payload)
		if err != nil {
			continue
		}
		cur = append(cur, payload...)
		if pkt.Marker {
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus, gaps, nil
}

// collectAudio decodes a remote Opus track into pcm until ctx ends.
func collectAudio(ctx context.Context, track *webrtc.TrackRemote) func() []int16 {
	var (
		mu  sync.Mutex
		out []int16
	)
	dec, _ := opus.NewDecoder()
	go func() {
		pcm := make([]int16, 5760)
		for ctx.Err() == nil {
			track.SetReadDeadline(time.Now().Add(time.Second))
			pkt := &rtp.Packet{}
			b := make([]byte, 1500)
			n, _, err := track.Read(b)
			if err != nil {
				continue
			}
			if pkt.Unmarshal(b[:n]) != nil {
				continue
			}
			k, err := dec.Decode(pkt.Payload, pcm)
			if err == nil {
				mu.Lock()
				out = append(out, pcm[:k]...)
				mu.Unlock()
			}
		}
	}()
	return func() []int16 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int16(nil), out...)
	}
}

// ffmpegDecode decodes an Annex-B stream to raw I420 frames.
func ffmpegDecode(t *testing.T, stream []byte, w, h int) [][]byte {
	t.Helper()
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg is needed to check that the video decodes: run `make test-deps` (apt-get install ffmpeg)")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.h264"), filepath.Join(dir, "out.yuv")
	must(t, os.WriteFile(in, stream, 0o644), "write stream")
	cmd := exec.Command(ff, "-v", "error", "-f", "h264", "-i", in, "-f", "rawvideo", "-pix_fmt", "yuv420p", out)
	msg, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(msg))) > 0 {
		t.Fatalf("ffmpeg could not decode the received video: %v: %s", err, msg)
	}
	raw, err := os.ReadFile(out)
	must(t, err, "read decoded video")
	size := w * h * 3 / 2
	var frames [][]byte
	for len(raw) >= size {
		frames = append(frames, raw[:size])
		raw = raw[size:]
	}
	return frames
}

// TestCallDeviceToPion is the whole call with a pion user in place of the browser: an MQTT
// join through the hub, the device's video (every frame, in order, decodable) and tone reach
// the user, and the user's tone reaches the device's speaker.
func TestCallDeviceToPion(t *testing.T) {
	s := startSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const channel, me = "e2e-call", uint32(4242)
	const myTone, deviceTone = 1000.0, 440.0

	c, res := s.joinClient(ctx, channel, me)
	if len(res.Users) != 0 {
		t.Fatalf("channel not empty: %+v", res.Users)
	}
	_, err := rtctest.PublishTone(ctx, c, myTone)
	must(t, err, "publish tone")

	start := time.Now()
	r := s.command(map[string]any{"action": "join", "channel": channel})
	if !r.OK || r.State.State != "joined" || r.State.Channel != channel {
		t.Fatalf("join command: %+v", r)
	}
	t.Logf("device joined in %s (MQTT command → reply)", time.Since(start).Round(time.Millisecond))
	devUID := r.State.UID
	waitPublished(ctx, t, c, devUID, rtc.KindVideo, rtc.KindAudio)

	vt, err := c.Subscribe(ctx, devUID, rtc.KindVideo)
	must(t, err, "subscribe video")
	at, err := c.Subscribe(ctx, devUID, rtc.KindAudio)
	must(t, err, "subscribe audio")
	t.Logf("first video from device %s after the join command", time.Since(start).Round(time.Millisecond))
	heard := collectAudio(ctx, at)

	aus, gaps, err := accessUnits(ctx, vt, 90)
	must(t, err, "receive video")
	if gaps != 0 {
		t.Errorf("%d RTP sequence gaps on loopback", gaps)
	}
	if !h264.IsKeyframe(aus[0]) {
		t.Errorf("first access unit is not a keyframe: the hub did not ask for one")
	}
	var stream []byte
	var counters []uint64
	for i, au := range aus {
		n, _, ok := h264.ParseFrameInfo(au)
		if !ok {
			t.Fatalf("access unit %d carries no frame info", i)
		}
		if i > 0 && n != counters[i-1]+1 {
			t.Errorf("frame counter skipped: %d after %d", n, counters[i-1])
		}
		counters = append(counters, n)
		stream = append(stream, au...)
	}
	frames := ffmpegDecode(t, stream, s.agentCfg.Width, s.agentCfg.Height)
	if len(frames) != len(aus) {
		t.Fatalf("decoded %d frames from %d access units", len(frames), len(aus))
	}
	for i, f := range frames {
		got, _ := synth.ReadCounterStrip(f[:s.agentCfg.Width*s.agentCfg.Height], s.agentCfg.Width)
		if got != uint32(counters[i]&0xffffff) {
			t.Fatalf("decoded frame %d shows counter %d, its SEI says %d", i, got, counters[i])
		}
	}
	t.Logf("received %d frames, counters %d..%d, all decoded", len(aus), counters[0], counters[len(counters)-1])

	// The device's tone, as the user hears it.
	pcm := heard()
	if len(pcm) < device.SampleRate {
		t.Fatalf("heard only %d samples of the device", len(pcm))
	}
	last := pcm[len(pcm)-device.SampleRate/2:]
	if f := audio.DominantFrequency(last, device.SampleRate); f < deviceTone-5 || f > deviceTone+5 {
		t.Errorf("device tone heard at %.1f Hz, want %.0f", f, deviceTone)
	}

	// The user's tone, as the device's speaker plays it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		samples, _, _, err := wav.ReadFile(s.speaker)
		if err == nil && len(samples) > 2*device.SampleRate {
			tail := samples[len(samples)-device.SampleRate/2:]
			f := audio.DominantFrequency(tail, device.SampleRate)
			if f > myTone-5 && f < myTone+5 && audio.RMS(tail) > 1000 {
				t.Logf("device speaker plays %.1f Hz at %.1f dBFS", f, audio.DBFS(tail))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("device speaker: %.1f Hz at RMS %.0f, want %.0f Hz", f, audio.RMS(tail), myTone)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("device speaker WAV: %d samples, err %v", len(samples), err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The agent's metrics show the call.
	m := s.agentMetrics()
	for _, want := range []string{`camagent_state{state="joined"} 1`, `camagent_commands_total{action="join",result="ok"} 1`,
		`camagent_mqtt_connected 1`, `camagent_channel_users 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("agent metrics lack %q:\n%s", want, m)
		}
	}
	if !regexp.MustCompile(`camagent_sent_frames_total [1-9]`).MatchString(m) {
		t.Errorf("agent metrics count no video frames:\n%s", m)
	}

	// The device reports us in its state, then leaves on command; we see it go.
	if st := s.agent.State(); len(st.Users) != 1 || st.Users[0] != me {
		t.Errorf("device state users = %v, want [%d]", st.Users, me)
	}
	r = s.command(map[string]any{"action": "leave"})
	if !r.OK || r.State.State != "idle" {
		t.Fatalf("leave command: %+v", r)
	}
	gone := map[string]bool{}
	for !gone[rtc.EventUserLeft] {
		select {
		case m := <-c.Events():
			if m.UID != nil && *m.UID == devUID {
				gone[m.Event] = true
			}
		case <-ctx.Done():
			t.Fatalf("no user-left after leave; saw %v", gone)
		}
	}
	if !gone[rtc.EventUserUnpublished] {
		t.Errorf("user-left without user-unpublished first")
	}
}
