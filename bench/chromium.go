package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The Chromium glass-to-glass figures share section 4 with the Go viewer's; this section
// string sorts right after theirs.
const chromiumSection = "4 glass-to-glass to headless Chromium (capture-time strip → requestVideoFrameCallback)"

// chromiumDCSection: the same in Chromium with the SDK's fallback forced, H.264 access units over
// a data channel into WebCodecs (what Firefox without H.264 in WebRTC gets; docs/sdk.md).
const chromiumDCSection = "4 glass-to-glass to headless Chromium, H.264 over a data channel into WebCodecs (the fallback)"

// firefoxSection: Debian's Firefox ESR, whose WebRTC has no H.264, gets the fallback by itself.
const firefoxSection = "4 glass-to-glass to headless Firefox ESR, no H.264 in its WebRTC: the data-channel fallback"

// chromiumPath is a browser and how the viewer's video reaches it: the SDK's videoTransport (""
// is the default: its own choice), and where its figures go.
type chromiumPath struct {
	browser, transport, id, section, via string
	mse                                  bool // go2rtc's MSE player instead of the hub's viewer (mse.go)
}

var (
	chromiumWebRTC = chromiumPath{"chromium", "", "glass.chromium", chromiumSection, "Chromium", false}
	chromiumDC     = chromiumPath{"chromium", "datachannel", "glass.chromium.dc", chromiumDCSection, "Chromium (data channel)", false}
	firefoxDC      = chromiumPath{"firefox", "", "glass.firefox", firefoxSection, "Firefox", false}
)

// chromiumWarmup frames are presented before the measured ones (the jitter buffer settles).
const chromiumWarmup = 30

// chromiumFrame is one presented frame as bench/chromium_g2g.mjs reports it. The latencies are
// in ms from the capture time in the picture to a wall-clock time at the browser.
type chromiumFrame struct {
	Counter   uint32   `json:"counter"`
	Capture   uint32   `json:"capture"`
	Presented int      `json:"presented"` // metadata.presentedFrames
	Display   float64  `json:"display"`   // → metadata.expectedDisplayTime
	Receive   *float64 `json:"receive"`   // → metadata.receiveTime (WebRTC only)
}

type chromiumRun struct {
	Frames     []chromiumFrame `json:"frames"`
	Width      int             `json:"width"`
	Height     int             `json:"height"`
	SkewStart  float64         `json:"skewStart"`
	SkewEnd    float64         `json:"skewEnd"`
	Seen       int             `json:"seen"`
	FirstFrame *float64        `json:"firstFrameAfterClickMs"`
	Browser    string          `json:"browser"`
	Transport  string          `json:"transport"` // the SDK's getTransport(), as text
	PageErrors []string        `json:"pageErrors"`
	Error      string          `json:"error"`
}

// chromiumDeps finds node, the browser and playwright-core; missing says which is absent.
func chromiumDeps(repo string) (node, browser, playwright, missing string) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", "", "", "node is not installed"
	}
	browser = os.Getenv("CAMAGENT_CHROMIUM")
	if browser == "" {
		browser = "/usr/bin/chromium"
	}
	if st, err := os.Stat(browser); err != nil || st.IsDir() {
		return "", "", "", "no Chromium at " + browser + " (set CAMAGENT_CHROMIUM)"
	}
	playwright = filepath.Join(repo, "e2e", "browser", "node_modules", "playwright-core")
	if _, err := os.Stat(filepath.Join(playwright, "package.json")); err != nil {
		return "", "", "", "playwright-core is not installed (cd e2e/browser && npm ci)"
	}
	return node, browser, playwright, ""
}

// measureChromium opens the hub's device viewer in headless Chromium, views the in-process
// agent's camera and times n presented frames from the capture time drawn into the picture to
// requestVideoFrameCallback's expected display time. A missing browser, node or playwright-core
// is reported in the table, not as a failure.
func measureChromium(ctx context.Context, repo string, s *inProcess, n, warmup int, path chromiumPath, r *Results) error {
	node, browser, playwright, missing := chromiumDeps(repo)
	if path.browser == "firefox" && missing == "" {
		browser = os.Getenv("CAMAGENT_FIREFOX")
		if browser == "" {
			browser = "/usr/bin/firefox-esr"
		}
		if _, err := os.Stat(browser); err != nil {
			missing = "no Firefox at " + browser + " (set CAMAGENT_FIREFOX)"
		} else if _, err := os.Stat(filepath.Join(filepath.Dir(playwright), "puppeteer-core", "package.json")); err != nil {
			missing = "puppeteer-core is not installed (cd e2e/browser && npm ci)"
		}
	}
	if missing != "" {
		r.Add(Figure{ID: path.id + ".p95", Section: path.section, Name: "capture → presented in " + path.via + " p95", Unit: "ms",
			Skipped: missing})
		return nil
	}
	var page string
	if path.mse {
		var stop func()
		var why string
		var err error
		if page, stop, why, err = startMSE(ctx, repo, s); err != nil {
			return err
		} else if why != "" {
			r.Add(Figure{ID: path.id + ".p95", Section: path.section, Name: "capture → presented in " + path.via + " p95", Unit: "ms",
				Skipped: "not measured: " + why})
			return nil
		}
		defer stop()
	}
	timeout := time.Duration(n+warmup)*time.Second/20 + 60*time.Second // 20 fps at worst, plus start-up
	cctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, node, filepath.Join(repo, "bench", "chromium_g2g.mjs"))
	cmd.Env = append(os.Environ(),
		"CAMBENCH_HUB_URL="+s.hubURL,
		"CAMBENCH_DEVICE="+s.agentID,
		fmt.Sprintf("CAMBENCH_FRAMES=%d", n),
		fmt.Sprintf("CAMBENCH_WARMUP=%d", warmup),
		fmt.Sprintf("CAMBENCH_TIMEOUT_MS=%d", timeout.Milliseconds()),
		"CAMBENCH_PLAYWRIGHT="+playwright,
		"CAMBENCH_CHROMIUM="+browser,
		"CAMBENCH_TRANSPORT="+path.transport,
		"CAMBENCH_BROWSER="+path.browser,
		"CAMBENCH_PAGE="+page,
		"CAMAGENT_FIREFOX="+browser,
	)
	// Node and the browser it launches form one process group, ended together on a timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var run chromiumRun
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &run); err != nil {
		return fmt.Errorf("node chromium_g2g.mjs: %v (exit: %v)\n%s", err, runErr, tail(stderr.String(), 2000))
	}
	if run.Error != "" && len(run.Frames) < n/2 {
		return fmt.Errorf("chromium: %s\n%s", run.Error, tail(stderr.String(), 2000))
	}

	// A misread strip (or a clock far off) shows as an absurd latency: keep 0–10 s.
	var display, receive, toDisplay Durations
	var misread, gaps, repeats int
	var prev uint32
	for i, f := range run.Frames {
		if f.Display < -5 || f.Display > 10000 {
			misread++
			continue
		}
		if i > 0 {
			switch d := (f.Counter - prev) & (1<<24 - 1); {
			case d == 0:
				repeats++
			case d > 1 && d < 1<<23:
				gaps += int(d - 1)
			}
		}
		prev = f.Counter
		display = append(display, msDur(f.Display))
		if f.Receive != nil {
			receive = append(receive, msDur(*f.Receive))
			toDisplay = append(toDisplay, msDur(f.Display-*f.Receive))
		}
	}
	if len(display) == 0 {
		return fmt.Errorf("chromium: no frame with a readable capture time (%d read, %d misread)", len(run.Frames), misread)
	}
	if path.browser == "chromium" {
		r.Machine.Chromium = run.Browser
	}
	note := fmt.Sprintf("%s %s, %dx%d; %d frames skipped, %d repeated, %d misread", path.browser, run.Browser, run.Width, run.Height, gaps, repeats, misread)
	if run.Transport != "" {
		note += "; video " + run.Transport
	}
	add := func(id, name string, d Durations, q float64, note string) {
		r.Add(Figure{ID: path.id + id, Section: path.section, Name: name, Unit: "ms", Value: d.P(q), N: len(d), Note: note})
	}
	add(".p50", "capture → presented in "+path.via+" p50", display, 50,
		fmt.Sprintf("expectedDisplayTime; timeOrigin clock − Date.now(): %+.1f ms at start, %+.1f at end", -run.SkewStart, -run.SkewEnd))
	add(".p95", "capture → presented in "+path.via+" p95", display, 95, "")
	add(".p99", "capture → presented in "+path.via+" p99", display, 99, note)
	if len(receive) > 0 {
		add(".receive.p50", "  capture → last packet received (receiveTime) p50", receive, 50, "")
		add(".receive.p95", "  capture → last packet received (receiveTime) p95", receive, 95, "")
		add(".decode.p50", "  received → presented (jitter buffer, decode, render) p50", toDisplay, 50, "")
		add(".decode.p95", "  received → presented (jitter buffer, decode, render) p95", toDisplay, 95, "")
	}
	if run.Error != "" {
		r.Note("glass-to-glass to %s: %s", path.via, run.Error)
	}
	if len(run.PageErrors) > 0 {
		r.Note("glass-to-glass to %s: page errors: %s", path.via, strings.Join(run.PageErrors, "; "))
	}
	return nil
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// lastLine is the last non-empty line of b (the script's JSON result).
func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
