package v4l2

import (
	"strings"
	"testing"
)

func sizes(rates []Rate, wh ...int) []Size {
	var s []Size
	for i := 0; i+1 < len(wh); i += 2 {
		s = append(s, Size{Width: wh[i], Height: wh[i+1], Rates: rates})
	}
	return s
}

var (
	r30 = []Rate{{1, 30}, {1, 15}}
	r5  = []Rate{{1, 5}}
	// A typical UVC webcam: YUYV is slow at large sizes, MJPEG is fast everywhere.
	uvc = []Format{
		{FourCC: "YUYV", Sizes: append(sizes(r30, 640, 480, 320, 240), sizes(r5, 1280, 720)...)},
		{FourCC: "MJPG", Sizes: sizes(r30, 640, 480, 1280, 720, 1920, 1080)},
	}
	// A UVC camera with its own H.264 encoder.
	h264cam = append([]Format{{FourCC: "H264", Sizes: sizes(r30, 1280, 720, 1920, 1080)}}, uvc...)
)

func TestChoose(t *testing.T) {
	cases := []struct {
		name            string
		formats         []Format
		format          string
		w, h, fps       int
		pass, raw       bool
		want            string
		wantErrContains string
	}{
		{"defaults pick 640x480 YUYV", uvc, "", 0, 0, 0, true, true, "YUYV 640x480@30", ""},
		{"720p30: MJPEG, YUYV is too slow there", uvc, "", 1280, 720, 30, true, true, "MJPG 1280x720@30", ""},
		{"720p5: YUYV is cheaper", uvc, "", 1280, 720, 5, true, true, "YUYV 1280x720@5", ""},
		{"H.264 camera: passthrough even at another size", h264cam, "", 640, 480, 30, true, true, "H264 1280x720@30", ""},
		{"H.264 camera, encoder software: raw", h264cam, "", 640, 480, 30, false, true, "YUYV 640x480@30", ""},
		{"format forced", h264cam, "mjpeg", 1920, 1080, 30, true, true, "MJPG 1920x1080@30", ""},
		{"passthrough only, no H.264", uvc, "", 640, 480, 30, true, false, "", "no usable format"},
		{"unknown format name", uvc, "rgb3", 640, 480, 30, true, true, "", "unknown format"},
		{"rate nearest at or above", []Format{{FourCC: "NV12", Sizes: sizes([]Rate{{1, 10}, {1, 25}, {1, 60}}, 640, 480)}},
			"", 640, 480, 20, true, true, "NV12 640x480@25", ""},
		{"stepwise size fits exactly", []Format{{FourCC: "YU12", Sizes: []Size{{Width: 48, Height: 32, MaxWidth: 1920, MaxHeight: 1080, StepWidth: 16, StepHeight: 8}}}},
			"", 800, 600, 30, true, true, "YU12 800x600", ""},
		{"unusable formats only", []Format{{FourCC: "RGB3", Sizes: sizes(r30, 640, 480)}}, "", 0, 0, 0, true, true, "", "no usable format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Choose(c.formats, c.format, c.w, c.h, c.fps, c.pass, c.raw)
			if c.wantErrContains != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrContains) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, c.wantErrContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != c.want {
				t.Errorf("chose %s, want %s", got, c.want)
			}
		})
	}
}

func TestFourCC(t *testing.T) {
	for _, s := range []string{"YUYV", "MJPG", "H264", "NV12", "GREY"} {
		if got := fourcc(code(s)); got != s {
			t.Errorf("fourcc(code(%q)) = %q", s, got)
		}
	}
	if got := fourcc(code("Y16 ") | 1<<31); got != "Y16-BE" {
		t.Errorf("big-endian Y16 shows as %q", got)
	}
	if got := (Rate{Num: 2, Den: 25}).String(); got != "12.50" {
		t.Errorf("rate 2/25 shows as %q", got)
	}
}
