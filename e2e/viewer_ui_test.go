package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/camagent/camagent/device/wav"
)

// TestViewerUIBrowser is issue 13's "the viewer as people expect it", in Chromium against a hub in its
// default (secure) mode with enrolled agents: e2e/browser/viewer-ui.mjs logs the admin in at
// desktop (1280×800) and phone (390×844) sizes, takes screenshots, and works the page's
// controls: the thumbnail from the snapshot route, fullscreen in and out (button and double
// click), mute and volume on the device's sound, the talking indicators, the reconnecting banner,
// the autoplay refusal's click-to-play, the advice when the picture cannot be decoded, and Talk
// held by touch. This test then checks that the device's speaker played the touch talk's tone.
//
// Screenshots go to $CAMAGENT_SCREENSHOTS, else to <temp dir>/camagent-viewer-screenshots (kept
// after the test, overwritten by the next run); the test log prints the path.
func TestViewerUIBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a headless browser: not in -short")
	}
	node := needChromium(t)
	shots := os.Getenv("CAMAGENT_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "camagent-viewer-screenshots")
	}
	shots, err := filepath.Abs(shots)
	must(t, err, "screenshot directory")
	must(t, os.MkdirAll(shots, 0o755), "screenshot directory")

	s := startSecure(t, "embedded")
	talked := func() int {
		samples, _, _, err := wav.ReadFile(s.speaker)
		if err != nil {
			return 0 // nothing played yet
		}
		return toneWindows(samples, browserTalkToneHz)
	}
	before := talked()
	cmd := exec.Command(node, "--test", "--test-concurrency=1", "--test-reporter=spec", "viewer-ui.mjs")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(),
		"CAMAGENT_HUB_URL="+s.base,
		"CAMAGENT_ADMIN_USER=admin",
		"CAMAGENT_ADMIN_PASSWORD=admin-password",
		"CAMAGENT_DEVICE_ID=porch",
		"CAMAGENT_SCREENSHOTS="+shots,
	)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t.Log(l)
	}
	if err != nil {
		t.Fatalf("viewer-ui.mjs: %v", err)
	}
	t.Logf("screenshots of the viewer: %s", shots)
	for _, name := range []string{"desktop-list.png", "desktop-viewer.png", "desktop-fullscreen.png", "desktop-autoplay-refused.png",
		"desktop-cannot-decode.png", "phone-list.png", "phone-viewer.png", "phone-talking.png"} {
		if fi, err := os.Stat(filepath.Join(shots, name)); err != nil || fi.Size() < 2000 {
			t.Errorf("screenshot %s missing or empty: %v", name, err)
		}
	}

	// Talk was held by touch only (the desktop part never talks): its tone is on the speaker.
	n := talked() - before
	t.Logf("device speaker: %.1f s of the browser's %.0f Hz after Talk held by touch", float64(n)/10, browserTalkToneHz)
	if n < 10 {
		t.Errorf("Talk held by touch reached the speaker for %.1f s, want ≥ 1 s", float64(n)/10)
	}
}

// needChromium fails the test unless the browser tests can run here (node, Debian's chromium,
// playwright-core in e2e/browser); it returns node's path.
func needChromium(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the browser tests")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("Debian's chromium is needed for the browser tests: run `make test-deps`")
	}
	if _, err := os.Stat("browser/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed in e2e/browser: run `make test-deps`")
	}
	return node
}
