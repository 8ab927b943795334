package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/camagent/camagent/rtc"
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
	r.Note("agent cost: speaker is a WAV file (--speaker null crashes the agent at join: nil speaker in Mixer.Run)")
	for i, size := range [][2]int{{640, 480}, {1280, 720}} {
		run, err := agentOnce(ctx, agentBin, hub, filepath.Join(dir, fmt.Sprintf("agent-%d", size[1])), size[0], size[1], window, uint32(i))
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
	return nil
}

func agentOnce(ctx context.Context, bin string, hub *hubProcess, dir string, w, h int, window time.Duration, n uint32) (agentRun, error) {
	var run agentRun
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return run, err
	}
	cfg := filepath.Join(dir, "camagent.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "width: %d\nheight: %d\n", w, h), 0o644); err != nil {
		return run, err
	}
	id := fmt.Sprintf("bench-%d", h)
	a, err := startChild(bin, filepath.Join(dir, "camagent.log"), "--config", cfg, "--mqtt", hub.broker, "--hub", hub.hubURL,
		"--ice-loopback-only", "--id", id, "--state-dir", dir, "--speaker", "wav:"+filepath.Join(dir, "speaker.wav"), "--log-level", "warn")
	if err != nil {
		return run, err
	}
	defer a.stop()
	cm, err := newCommander(hub.broker, id)
	if err != nil {
		return run, err
	}
	defer cm.close()
	// idle: connected to the broker, answering status (a command sent before the agent
	// subscribed is lost, so ask until it answers)
	if err := cm.awaitDevice(ctx, 20*time.Second); err != nil {
		return run, fmt.Errorf("idle agent: %w (log %s)", err, a.log.Name())
	}
	time.Sleep(time.Second)
	m := startCPU(a.pid())
	time.Sleep(window)
	run.idleCPU = m.percent()
	run.idleRSS, _, _ = memKB(a.pid())

	channel := fmt.Sprintf("bench-agent-%d", h)
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
	vt, _, err := subscribeVideo(ctx, viewer, dev)
	if err != nil {
		return run, err
	}
	at, err := viewer.Subscribe(ctx, dev, rtc.KindAudio)
	if err != nil {
		return run, err
	}
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go readFrames(rctx, vt, func(*frame) bool { return true })
	go drain(rctx, at)
	talker, _, err := hub.joinWithToken(ctx, channel, 600+n)
	if err != nil {
		return run, err
	}
	defer talker.Close()
	if err := publishTone(rctx, talker, 1000); err != nil {
		return run, err
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
