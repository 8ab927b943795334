package spec

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
)

// A rpicam-vid that sends one IDR and a P picture, then dies, is restarted: OnError hears
// about each death and ReadSample keeps delivering.
func TestRpicamIsSupervised(t *testing.T) {
	enc, err := h264.NewEncoder(64, 64, 30)
	if err != nil {
		t.Fatal(err)
	}
	f := h264.NewFrame(64, 64)
	var stream []byte
	for i := 0; i < 2; i++ {
		au, _ := enc.Encode(f, false, h264.FrameInfo{})
		stream = append(stream, au...)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "s.h264"), stream, 0o644)
	script := "#!/bin/sh\ncat " + filepath.Join(dir, "s.h264") + "\necho 'camera gone' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "rpicam-vid"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var (
		mu   sync.Mutex
		errs []string
	)
	o := VideoOptions{Width: 64, Height: 64, FPS: 30, OnError: func(err error) { mu.Lock(); errs = append(errs, err.Error()); mu.Unlock() }}
	cam, err := OpenCamera(context.Background(), "rpicam:--camera 0", o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys := 0
	for i := 0; i < 4; i++ { // two runs of rpicam-vid at least
		s, err := cam.ReadSample(ctx)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if s.Keyframe {
			keys++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) == 0 || !strings.Contains(errs[0], "camera gone") {
		t.Errorf("OnError got %q, want rpicam-vid's stderr", errs)
	}
	if keys < 2 {
		t.Errorf("%d keyframes in 4 samples from two runs", keys)
	}
	if _, err := OpenCamera(ctx, "rpicam", VideoOptions{Encoder: "software"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("rpicam with the software encoder accepted")
	}
}
