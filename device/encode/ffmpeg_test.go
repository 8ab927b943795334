package encode

import (
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/h264/h264test"
	"github.com/camagent/camagent/device/synth"
)

func TestFFmpegEncoder(t *testing.T) {
	h264test.FFmpeg(t) // the test needs ffmpeg; it does not skip
	if err := FFmpegAvailable(""); err != nil {
		t.Fatal(err)
	}
	const w, h = 160, 120
	e, err := NewFFmpeg(FFmpegOptions{Width: w, Height: h, FPS: 30, GOP: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	f := h264.NewFrame(w, h)
	var (
		stream []byte
		units  int
		keys   []int
	)
	for i := 0; i < 40; i++ {
		synth.Render(f, uint64(i), time.Now())
		au, err := e.Encode(f, i == 20, time.Now())
		if err != nil {
			t.Fatalf("picture %d: %v", i, err)
		}
		if au == nil {
			continue
		}
		if h264.IsKeyframe(au) {
			keys = append(keys, units)
			nals := h264.SplitAnnexB(au)
			seen := map[byte]bool{}
			for _, n := range nals {
				seen[h264.NALType(n)] = true
			}
			if !seen[h264.NALSPS] || !seen[h264.NALPPS] {
				t.Errorf("IDR %d without SPS/PPS", units)
			}
		}
		units++
		stream = append(stream, au...)
	}
	// One unit of latency per process: 40 pictures, two processes → 38 units.
	if units < 36 {
		t.Errorf("%d access units for 40 pictures", units)
	}
	if len(keys) != 2 || keys[0] != 0 || keys[1] < 18 || keys[1] > 21 {
		t.Errorf("keyframes at units %v, want the first and one right after the forced one", keys)
	}
	if got := len(h264test.Decode(t, stream, w, h)); got != units {
		t.Errorf("decoded %d pictures of %d units", got, units)
	}
	if _, err := NewFFmpeg(FFmpegOptions{Width: w, Height: h, Command: "/nonexistent/ffmpeg"}); err == nil {
		t.Error("a missing ffmpeg started")
	}
}
