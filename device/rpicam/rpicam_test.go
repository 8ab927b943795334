package rpicam

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
)

// stream encodes n pictures of the synthetic camera with an IDR every 10.
func stream(t *testing.T, n int) [][]byte {
	t.Helper()
	enc, err := h264.NewEncoder(128, 96, 30)
	if err != nil {
		t.Fatal(err)
	}
	enc.SetIDRInterval(10)
	f := h264.NewFrame(128, 96)
	var aus [][]byte
	for i := 0; i < n; i++ {
		synth.Render(f, uint64(i), time.Unix(0, 0))
		au, err := enc.Encode(f, false, h264.FrameInfo{Counter: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		aus = append(aus, au)
	}
	return aus
}

// fakeRpicam writes a script that records its arguments and plays a stream.
func fakeRpicam(t *testing.T, body string) (cmd, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	cmd = filepath.Join(dir, "rpicam-vid")
	script := "#!/bin/sh\necho \"$@\" > " + argsFile + "\n" + body + "\n"
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, argsFile
}

func TestCameraRunsRpicamVid(t *testing.T) {
	aus := stream(t, 30)
	dir := t.TempDir()
	file := filepath.Join(dir, "stream.h264")
	if err := os.WriteFile(file, bytes.Join(aus, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	// The stream, then rpicam-vid keeps running (as it does) until it is stopped.
	cmd, argsFile := fakeRpicam(t, "cat "+file+"\nexec sleep 60")
	c, err := Open(Options{Width: 128, Height: 96, FPS: 30, Bitrate: 2_000_000, Command: cmd, Args: []string{"--rotation", "180"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The script writes faster than a camera: the camera keeps the newest units and drops
	// older ones, so what arrives is an in-order subset. The last picture stays in the
	// splitter until the next begins: the 29th is the last to come out.
	next, got := 0, 0
	for next < 29 {
		s, err := c.ReadSample(ctx)
		if err != nil {
			t.Fatalf("after %d samples: %v", got, err)
		}
		i := next
		for i < len(aus) && !bytes.Equal(s.Data, aus[i]) {
			i++
		}
		if i == len(aus) {
			t.Fatalf("sample %d is none of the remaining access units", got)
		}
		if s.Keyframe != (i%10 == 0) {
			t.Fatalf("access unit %d: keyframe %v", i, s.Keyframe)
		}
		next, got = i+1, got+1
	}
	t.Logf("%d of 29 access units read (the rest dropped as stale)", got)
	c.RequestKeyframe() // only logged
	args, _ := os.ReadFile(argsFile)
	for _, want := range []string{"-t 0 --codec h264 --inline --low-latency --flush", "--width 128 --height 96 --framerate 30 --intra 60",
		"--bitrate 2000000", "--rotation 180 -o -"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("rpicam-vid called with %q, lacks %q", args, want)
		}
	}
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := c.ReadSample(ctx); err != ErrClosed {
		t.Errorf("after Close: %v", err)
	}
}

func TestCameraReportsDeath(t *testing.T) {
	cmd, _ := fakeRpicam(t, "echo 'ERROR: *** no cameras available ***' >&2\nexit 1")
	c, err := Open(Options{Command: cmd})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = c.ReadSample(ctx)
	if err == nil || !strings.Contains(err.Error(), "no cameras available") {
		t.Fatalf("got %v, want rpicam-vid's complaint", err)
	}
	if _, err := Open(Options{Command: "/nonexistent/rpicam-vid"}); err == nil {
		t.Error("a missing command started")
	}
}
