//go:build vmtest

package vmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// result is the probe's "VMTEST RESULT" line.
type result struct {
	OK           bool    `json:"ok"`
	Error        string  `json:"error"`
	JoinMillis   int64   `json:"joinMillis"`
	FirstFrameMs int64   `json:"firstFrameMillis"`
	Frames       int     `json:"frames"`
	Keyframes    int     `json:"keyframes"`
	Bytes        int     `json:"bytes"`
	Seconds      float64 `json:"seconds"`
	FPS          float64 `json:"fps"`
	Gaps         int     `json:"gaps"`
	SentToneHz   float64 `json:"sentToneHz"`
	HeardHz      float64 `json:"heardHz"`
	HeardDBFS    float64 `json:"heardDBFS"`
	HeardSamples int     `json:"heardSamples"`
	Attempts     int     `json:"attempts"`
	// the camera unplugged mid-call
	UnplugGapMs          int64 `json:"unplugGapMs"`
	FramesAfterUnplug    int   `json:"framesAfterUnplug"`
	KeyframesAfterUnplug int   `json:"keyframesAfterUnplug"`
	// snapshots and privacy mode (privacy_test.go)
	Privacy *privacyResult `json:"privacy"`
}

func section(console, name string) string {
	begin, end := "VMTEST "+name+" BEGIN", "VMTEST "+name+" END"
	i := strings.Index(console, begin)
	j := strings.Index(console, end)
	if i < 0 || j < i {
		return ""
	}
	return console[i+len(begin) : j]
}

func TestVM(t *testing.T) {
	start := time.Now()
	for _, tool := range []string{"qemu-system-x86_64", "cpio", "depmod", "apt-get", "dpkg", "aplay"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `make test-deps`", tool)
		}
	}
	repo, _ := filepath.Abs("..")
	cache := filepath.Join(repo, ".cache", "vm")
	out := t.TempDir()
	build := exec.Command("./mkinitramfs.sh", cache, out)
	build.Stderr = os.Stderr
	if msg, err := build.Output(); err != nil {
		t.Fatalf("mkinitramfs.sh: %v\n%s", err, msg)
	}
	t.Logf("initramfs built in %s", time.Since(start).Round(time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	boot := time.Now()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", "-m", "1024", "-smp", "2", "-accel", "tcg,thread=multi", "-nographic", "-no-reboot",
		"-kernel", filepath.Join(out, "vmlinuz"), "-initrd", filepath.Join(out, "initramfs.gz"),
		"-append", "console=ttyS0 quiet panic=-1", "-nic", "none")
	var console bytes.Buffer
	qemu.Stdout, qemu.Stderr = &console, &console
	err := qemu.Run()
	text := strings.ReplaceAll(console.String(), "\r", "")
	os.WriteFile(filepath.Join(cache, "console.log"), []byte(text), 0o644)
	t.Logf("VM ran %s (console in %s)", time.Since(boot).Round(time.Second), filepath.Join(cache, "console.log"))
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, tail(text, 4000))
	}
	if !strings.Contains(text, "VMTEST END") {
		t.Fatalf("the VM did not finish its script:\n%s", tail(text, 4000))
	}

	// Done-when 1: `camagent devices` shows the vivid camera with its formats, and the
	// loopback card (the probe's spec.List must say the same).
	for _, sec := range []string{"DEVICES", "LIST"} {
		list := section(text, sec)
		for _, want := range []string{"v4l2:/dev/video0", "vivid", "YUYV", "320x180 @", "Loopback"} {
			if !strings.Contains(list, want) {
				t.Errorf("%s: device list lacks %q:\n%s", sec, want, list)
			}
		}
	}
	list := section(text, "DEVICES")
	if m := regexp.MustCompile(`(?m)^\s+(\S+) .*\[(encode|passthrough)\]`).FindAllStringSubmatch(list, -1); len(m) > 0 {
		t.Logf("vivid offers %d usable formats", len(m))
	}

	// The agent read the vivid camera through V4L2 (not the synthetic camera).
	if cam := regexp.MustCompile(`msg="camera streaming".*`).FindString(text); cam == "" {
		t.Errorf("the agent's log shows no V4L2 camera streaming")
	} else {
		t.Logf("agent: %s", cam)
	}
	m := regexp.MustCompile(`VMTEST RESULT (\{.*\})`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no probe result on the console:\n%s", tail(text, 4000))
	}
	var r result
	if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
		t.Fatalf("probe result %s: %v", m[1], err)
	}
	t.Logf("probe: %s", m[1])
	if !r.OK {
		t.Fatalf("probe failed: %s\n%s", r.Error, tail(text, 4000))
	}
	// Done-when 2 (the media): frames captured and published, the tone went round.
	if r.Frames < 10 || r.Keyframes < 1 {
		t.Errorf("received %d frames (%d keyframes) in %.1f s: want at least 10 and a keyframe", r.Frames, r.Keyframes, r.Seconds)
	}
	// The probe's tone has amplitude 0.3: an RMS of 0.3/√2, −13.5 dBFS. Opus and the mixer
	// keep it within a few dB (−15.7 to −11.6 seen).
	want := 20 * math.Log10(0.3/math.Sqrt2)
	if math.Abs(r.HeardHz-r.SentToneHz) > 10 || math.Abs(r.HeardDBFS-want) > 4 {
		t.Errorf("heard %.1f Hz at %.1f dBFS, want %.0f Hz at %.1f dBFS", r.HeardHz, r.HeardDBFS, r.SentToneHz, want)
	}
	// The camera unplugged mid-call (vivid's Disconnect control): the agent reopens it and the
	// picture returns, starting with a keyframe, on the same track.
	if r.UnplugGapMs < 250 || r.FramesAfterUnplug < 10 || r.KeyframesAfterUnplug < 1 {
		t.Errorf("camera unplug: longest gap %d ms, then %d frames (%d keyframes); want a gap, then 10 frames starting with a keyframe",
			r.UnplugGapMs, r.FramesAfterUnplug, r.KeyframesAfterUnplug)
	}
	if !strings.Contains(text, `msg="camera failed; reopening"`) {
		t.Errorf("the agent's log does not show the camera failing and being reopened")
	}
	t.Logf("camera unplugged mid-call: video stood still %d ms, then %d frames (%d keyframes)", r.UnplugGapMs, r.FramesAfterUnplug, r.KeyframesAfterUnplug)
	checkPrivacy(t, r.Privacy)
	if r.Attempts > 1 {
		t.Logf("NOTE: the call needed %d attempts (the emulated CPU stalled; see the console log)", r.Attempts)
	}
	t.Logf("join %d ms, first frame %d ms after the MQTT join, %d frames (%.1f fps, %d keyframes, %d bytes), "+
		"tone %.0f Hz heard back at %.1f Hz %.1f dBFS; whole test %s",
		r.JoinMillis, r.FirstFrameMs, r.Frames, r.FPS, r.Keyframes, r.Bytes, r.SentToneHz, r.HeardHz, r.HeardDBFS,
		time.Since(start).Round(time.Second))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
