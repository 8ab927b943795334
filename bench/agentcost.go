package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
)

// agentRun is one camagent process measured idle and in a call.
type agentRun struct {
	idleCPU, callCPU float64 // % of one core
	idleRSS, callRSS int64   // kB
	peakRSS          int64   // kB, VmHWM over the whole life
}

// measureAgent runs the camagent binary against a camhub process at each video size: idle,
// then in a call publishing H.264 and Opus to one Go viewer while a Go talker's Opus tone
// plays on its speaker.
func measureAgent(ctx context.Context, agentBin string, hub *hubProcess, dir string, window time.Duration, r *Results) error {
	sec := "6 agent cost (camagent process)"
	// --speaker null would be the lightest sink, but the agent dereferences the nil speaker
	// when a call starts (device/audio Mixer.Run): the WAV file speaker stands in for it.
	r.Note("agent cost: the speaker is a WAV file, so the remote talker is decoded and mixed as on a device")
	for i, size := range [][2]int{{640, 480}, {1280, 720}} {
		run, err := agentOnce(ctx, agentBin, hub, filepath.Join(dir, fmt.Sprintf("agent-%d", size[1])), size[0], size[1], window, uint32(i), true)
		if err != nil {
			return fmt.Errorf("agent %dx%d: %w", size[0], size[1], err)
		}
		tag := fmt.Sprintf("%dp", size[1])
		name := fmt.Sprintf("%dx%d@30", size[0], size[1])
		if i == 0 {
			r.Add(Figure{ID: "agent.idle.cpu", Section: sec, Name: "idle (MQTT connected): CPU", Unit: "%core", Value: run.idleCPU})
			r.Add(Figure{ID: "agent.idle.rss", Section: sec, Name: "idle: RSS", Unit: "MB", Value: float64(run.idleRSS) / 1024, Target: 10})
		}
		var cpuT, rssT float64
		if size[1] == 480 {
			cpuT, rssT = 5, 20
		}
		r.Add(Figure{ID: "agent." + tag + ".cpu", Section: sec, Name: name + " + Opus, 1 viewer, 1 talker: CPU", Unit: "%core", Value: run.callCPU, Target: cpuT})
		r.Add(Figure{ID: "agent." + tag + ".rss", Section: sec, Name: name + " in call: RSS", Unit: "MB", Value: float64(run.callRSS) / 1024})
		r.Add(Figure{ID: "agent." + tag + ".peak_rss", Section: sec, Name: name + " in call: peak RSS (VmHWM)", Unit: "MB", Value: float64(run.peakRSS) / 1024, Target: rssT})
	}
	// Where the 640x480 call's CPU goes: the camera alone (no microphone, no talker), and the
	// audio alone (no camera: Opus encoding of the microphone, decoding and mixing the talker).
	for i, part := range []struct {
		id, name string
		args     []string
		talker   bool
	}{
		{"agent.480p.video_only.cpu", "  of which camera alone (--microphone null, no talker): CPU", []string{"--microphone", "null"}, false},
		{"agent.audio_only.cpu", "  of which audio alone (--camera null, with talker): CPU", []string{"--camera", "null"}, true},
	} {
		run, err := agentOnce(ctx, agentBin, hub, filepath.Join(dir, fmt.Sprintf("agent-part-%d", i)), 640, 480, window, uint32(10+i), part.talker, part.args...)
		if err != nil {
			return fmt.Errorf("agent %s: %w", part.id, err)
		}
		r.Add(Figure{ID: part.id, Section: sec, Name: part.name, Unit: "%core", Value: run.callCPU})
	}
	return nil
}

func agentOnce(ctx context.Context, bin string, hub *hubProcess, dir string, w, h int, window time.Duration, n uint32, talk bool, extra ...string) (agentRun, error) {
	var run agentRun
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return run, err
	}
	cfg := filepath.Join(dir, "camagent.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "width: %d\nheight: %d\n", w, h), 0o644); err != nil {
		return run, err
	}
	id := fmt.Sprintf("bench-%d-%d", h, n)
	cm, a, err := startAgentProcess(ctx, bin, hub, dir, id, nil, append([]string{"--config", cfg,
		"--speaker", "wav:" + filepath.Join(dir, "speaker.wav")}, extra...)...)
	if err != nil {
		return run, err
	}
	defer a.stop()
	defer cm.close()
	time.Sleep(time.Second)
	m := startCPU(a.pid())
	time.Sleep(window)
	run.idleCPU = m.percent()
	run.idleRSS, _, _ = memKB(a.pid())

	channel := fmt.Sprintf("bench-agent-%d-%d", h, n)
	rep, err := cm.do(ctx, map[string]any{"action": "join", "channel": channel})
	if err != nil {
		return run, fmt.Errorf("%w (log %s)", err, a.log.Name())
	}
	dev := rep.State.UID
	viewer, _, err := hub.joinWithToken(ctx, channel, 500+n)
	if err != nil {
		return run, err
	}
	defer viewer.Close()
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	for _, kind := range []string{rtc.KindVideo, rtc.KindAudio} {
		if slices.Contains(extra, "--"+map[string]string{rtc.KindVideo: "camera", rtc.KindAudio: "microphone"}[kind]) {
			continue // that device is null: nothing published
		}
		t, err := viewer.Subscribe(ctx, dev, kind)
		if err != nil {
			return run, err
		}
		go drain(rctx, t)
	}
	if talk {
		talker, _, err := hub.joinWithToken(ctx, channel, 600+n)
		if err != nil {
			return run, err
		}
		defer talker.Close()
		if _, err := rtctest.PublishTone(rctx, talker, 1000); err != nil {
			return run, err
		}
	}
	time.Sleep(2 * time.Second) // the agent subscribes to the talker and settles
	m = startCPU(a.pid())
	time.Sleep(window)
	run.callCPU = m.percent()
	run.callRSS, run.peakRSS, _ = memKB(a.pid())
	select {
	case err := <-a.done:
		return run, fmt.Errorf("camagent exited during the call: %v (log %s)", err, a.log.Name())
	default:
	}
	cm.do(ctx, map[string]any{"action": "leave"})
	return run, nil
}

// startAgentProcess runs camagent against hub and waits until it answers MQTT commands (a
// command sent before the agent subscribed is lost, so it asks for status until it answers).
func startAgentProcess(ctx context.Context, bin string, hub *hubProcess, dir, id string, env []string, extra ...string) (*commander, *child, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	args := append([]string{"--mqtt", hub.broker, "--hub", hub.hubURL, "--ice-loopback-only", "--id", id,
		"--state-dir", dir, "--log-level", "warn"}, extra...)
	a, err := startChildEnv(bin, filepath.Join(dir, "camagent.log"), env, args...)
	if err != nil {
		return nil, nil, err
	}
	cm, err := newCommander(hub.broker, id)
	if err != nil {
		a.stop()
		return nil, nil, err
	}
	if err := cm.awaitDevice(ctx, 20*time.Second); err != nil {
		cm.close()
		a.stop()
		return nil, nil, fmt.Errorf("agent: %w (log %s)", err, a.log.Name())
	}
	return cm, a, nil
}
