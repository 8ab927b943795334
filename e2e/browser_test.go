package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/hub/token"
)

// browserTalkToneHz is the tone of Chromium's fake microphone (e2e/browser/lib.mjs MIC_TONE_HZ).
const browserTalkToneHz = 1000.0

// TestBrowser runs the headless Chromium tests (e2e/browser/*.test.mjs: the viewer page with
// push-to-talk, the quickstart page, token refusals) against a real hub and agent, then
// checks that the browser's voice reached the device's speaker.
func TestBrowser(t *testing.T) {
	node := needChromium(t)
	s := startSystem(t)
	const tokenUID = 31337
	channel := "browser-tokens"
	cmd := exec.Command(node, "--test", "--test-concurrency=1", "--test-reporter=spec", ".")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(),
		"CAMAGENT_HUB_URL="+s.baseURL,
		"CAMAGENT_DEVICE_ID="+s.agentCfg.ID,
		fmt.Sprintf("CAMAGENT_DEVICE_TONE_HZ=%g", s.agentCfg.ToneHz),
		"CAMAGENT_APP_ID=demo",
		"CAMAGENT_TOKEN_CHANNEL="+channel,
		fmt.Sprintf("CAMAGENT_TOKEN_UID=%d", tokenUID),
		"CAMAGENT_EXPIRED_TOKEN="+s.mint(channel, tokenUID, token.RolePublisher, time.Minute, time.Now().Add(-time.Hour)),
		"CAMAGENT_WRONG_CHANNEL_TOKEN="+s.mint(channel+"-other", tokenUID, token.RolePublisher, time.Hour, time.Now()),
	)
	out, err := cmd.StdoutPipe()
	must(t, err, "pipe")
	cmd.Stderr = cmd.Stdout
	must(t, cmd.Start(), "start node")
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser tests failed: %v", err)
	}

	// The viewer test held Talk for a few seconds: the device's speaker must have played it.
	samples, _, _, err := wav.ReadFile(s.speaker)
	must(t, err, "read the device's speaker WAV")
	const win = device.SampleRate / 10
	var talk int
	var peak float64
	for i := 0; i+win <= len(samples); i += win {
		w := samples[i : i+win]
		if audio.RMS(w) < 300 {
			continue
		}
		f := audio.DominantFrequency(w, device.SampleRate)
		if f > browserTalkToneHz-20 && f < browserTalkToneHz+20 {
			talk++
			peak = max(peak, audio.DBFS(w))
		}
	}
	t.Logf("device speaker: %.1f s of %.0f Hz from the browser (loudest %.1f dBFS) in %s",
		float64(talk)/10, browserTalkToneHz, peak, filepath.Base(s.speaker))
	if talk < 10 {
		t.Errorf("the browser's talk tone reached the device's speaker for only %.1f s (want ≥ 1 s)", float64(talk)/10)
	}
}
