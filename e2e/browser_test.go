package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/hub/token"
)

// browserTalkToneHz is the tone of Chromium's fake microphone (e2e/browser/lib.mjs MIC_TONE_HZ),
// firefoxTalkToneHz Firefox's (FIREFOX_TONE_HZ).
const (
	browserTalkToneHz = 1000.0
	firefoxTalkToneHz = 700.0
)

// TestBrowser runs the headless browser tests (e2e/browser/*.test.mjs: the viewer page with
// push-to-talk in Chromium and in Firefox, the quickstart page, a Chromium-Firefox call, a
// browser without H.264, token refusals) against a real hub and agent, then checks that both
// browsers' voices reached the device's speaker.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("headless browsers: not in -short")
	}
	node := needChromium(t)
	if _, err := os.Stat("/usr/bin/firefox-esr"); err != nil {
		t.Fatal("Debian's firefox-esr is needed for the browser tests: run `make test-deps`")
	}
	if _, err := os.Stat("browser/node_modules/puppeteer-core"); err != nil {
		t.Fatal("puppeteer-core is not installed in e2e/browser: run `make test-deps`")
	}
	pulse := startPulse(t)
	s := startSystem(t)
	const tokenUID = 31337
	channel := "browser-tokens"
	env := append(os.Environ(),
		"CAMAGENT_HUB_URL="+s.baseURL,
		"CAMAGENT_DEVICE_ID="+s.agentCfg.ID,
		fmt.Sprintf("CAMAGENT_DEVICE_TONE_HZ=%g", s.agentCfg.ToneHz),
		"CAMAGENT_FIREFOX_PULSE="+pulse,
		"CAMAGENT_APP_ID=demo",
		"CAMAGENT_TOKEN_CHANNEL="+channel,
		fmt.Sprintf("CAMAGENT_TOKEN_UID=%d", tokenUID),
		"CAMAGENT_EXPIRED_TOKEN="+s.mint(channel, tokenUID, token.RolePublisher, time.Minute, time.Now().Add(-time.Hour)),
		"CAMAGENT_WRONG_CHANNEL_TOKEN="+s.mint(channel+"-other", tokenUID, token.RolePublisher, time.Hour, time.Now()),
	)
	// The device's speaker file starts afresh at each call, so each browser's talk is checked
	// right after the tests it talks in: Firefox's first, then the rest (Chromium's viewer).
	files, err := filepath.Glob("browser/*.test.mjs")
	must(t, err, "list the browser tests")
	var rest []string
	for _, f := range files {
		if f = filepath.Base(f); f != "firefox.test.mjs" {
			rest = append(rest, f)
		}
	}
	for _, run := range []struct {
		name  string
		hz    float64
		files []string
		talks int    // in the last call's speaker WAV, if known
		which string // what they are
	}{
		{"Firefox", firefoxTalkToneHz, []string{"firefox.test.mjs"}, 2, "the controls test's Talk held by Space, then by touch"},
		{"Chromium", browserTalkToneHz, rest, 0, ""},
	} {
		runNodeTests(t, node, env, run.files)
		samples, _, _, err := wav.ReadFile(s.speaker)
		must(t, err, "read the device's speaker WAV")
		secs, peak := toneSeconds(samples, run.hz)
		t.Logf("device speaker: %.1f s of %.0f Hz from %s (loudest %.1f dBFS) in %s", secs, run.hz, run.name, peak, filepath.Base(s.speaker))
		found := talks(samples, run.hz)
		for i, tk := range found {
			t.Logf("device speaker: %s's talk %d/%d spans %v with %d dropouts (runs of 10 ms windows below RMS 300), %v silent in all, the longest %v; where (start+length): %s",
				run.name, i+1, len(found), tk.span, tk.dropouts, tk.silent, tk.longest, tk.where())
			if tk.silent*2 > tk.span {
				t.Errorf("%s's talk %d/%d is mostly silence: %v of %v", run.name, i+1, len(found), tk.silent, tk.span)
			}
		}
		if run.talks > 0 && len(found) != run.talks {
			t.Errorf("%s: %d talks in the device's speaker, want %d (%s)", run.name, len(found), run.talks, run.which)
		}
		if secs < 1 {
			t.Errorf("%s's talk tone reached the device's speaker for only %.1f s (want ≥ 1 s)", run.name, secs)
		}
	}
}

// runNodeTests runs node --test on files of e2e/browser, one at a time, logging their output.
func runNodeTests(t *testing.T, node string, env, files []string) {
	t.Helper()
	cmd := exec.Command(node, append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)...)
	cmd.Dir = "browser"
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	must(t, err, "pipe")
	cmd.Stderr = cmd.Stdout
	must(t, cmd.Start(), "start node")
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser tests %v failed: %v", files, err)
	}
}

// toneSeconds returns how long (in 0.1 s windows) samples hold a tone of hz, and its loudest window.
func toneSeconds(samples []int16, hz float64) (secs, peakDBFS float64) {
	const win = device.SampleRate / 10
	var n int
	peakDBFS = -120
	for i := 0; i+win <= len(samples); i += win {
		if w := samples[i : i+win]; holdsTone(w, hz) {
			n++
			peakDBFS = max(peakDBFS, audio.DBFS(w))
		}
	}
	return float64(n) / 10, peakDBFS
}

// quietRMS is the level below which a window counts as silence.
const quietRMS = 300

// holdsTone reports whether the window w is loud enough and its dominant frequency within
// 20 Hz of hz.
func holdsTone(w []int16, hz float64) bool {
	if audio.RMS(w) < quietRMS {
		return false
	}
	f := audio.DominantFrequency(w, device.SampleRate)
	return f > hz-20 && f < hz+20
}

// talk is one talk found in the device's speaker: from the first loud 10 ms window of its first
// 0.1 s window of the tone to the end of its last (a second without the tone ends it), with its
// dropouts: runs of silent 10 ms windows in it (the silence after its last loud window is not one).
type talk struct {
	span, silent, longest time.Duration
	dropouts              int
	at                    [][2]time.Duration // the first dropouts' starts (from the talk's) and lengths
}

// where lists the talk's first dropouts as start+length.
func (tk talk) where() string {
	var b strings.Builder
	for _, d := range tk.at {
		fmt.Fprintf(&b, " %v+%v", d[0], d[1])
	}
	if tk.dropouts > len(tk.at) {
		b.WriteString(" …")
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()[1:]
}

// talks finds the talks of tone hz in samples (see talk).
func talks(samples []int16, hz float64) []talk {
	const coarse, fine = device.SampleRate / 10, device.SampleRate / 100
	var spans [][2]int // sample offsets [first, end) of each talk
	for i := 0; i+coarse <= len(samples); i += coarse {
		if !holdsTone(samples[i:i+coarse], hz) {
			continue
		}
		if n := len(spans); n > 0 && i-spans[n-1][1] < device.SampleRate {
			spans[n-1][1] = i + coarse
		} else {
			spans = append(spans, [2]int{i, i + coarse})
		}
	}
	win := func(n int) time.Duration { return time.Duration(n) * 10 * time.Millisecond }
	out := make([]talk, 0, len(spans))
	for _, sp := range spans {
		// The talk starts at its first loud 10 ms window, not at the 0.1 s window holding it.
		for sp[0]+fine <= sp[1] && audio.RMS(samples[sp[0]:sp[0]+fine]) < quietRMS {
			sp[0] += fine
		}
		tk := talk{span: win((sp[1] - sp[0]) / fine)}
		run := 0
		for i := sp[0]; i+fine <= sp[1]; i += fine {
			if audio.RMS(samples[i:i+fine]) < quietRMS {
				run++
				tk.silent += win(1)
				continue
			}
			if run > 0 {
				tk.dropouts++
				tk.longest = max(tk.longest, win(run))
				if len(tk.at) < 10 {
					tk.at = append(tk.at, [2]time.Duration{win((i-sp[0])/fine - run), win(run)})
				}
			}
			run = 0
		}
		tk.silent -= win(run) // the talk's tail, not a dropout
		out = append(out, tk)
	}
	return out
}
