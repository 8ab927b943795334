package spec

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/camagent/camagent/device/alsa"
	"github.com/camagent/camagent/device/v4l2"
)

func TestWriteList(t *testing.T) {
	cams := []v4l2.Info{{
		Path: "/dev/video0", ByID: "/dev/v4l/by-id/usb-Cam-video-index0", Name: "USB Cam", Driver: "uvcvideo", Bus: "usb-1",
		Formats: []v4l2.Format{
			{FourCC: "MJPG", Description: "Motion-JPEG", Sizes: []v4l2.Size{{Width: 1280, Height: 720, Rates: []v4l2.Rate{{Num: 1, Den: 30}}}}},
			{FourCC: "RGB3", Description: "RGB", Sizes: []v4l2.Size{{Width: 640, Height: 480}}},
		},
	}, {Path: "/dev/video13", Name: "bcm2835-isp", Driver: "bcm2835-isp"}}
	pcms := []alsa.Device{{Card: 0, CardID: "Loopback", CardName: "Loopback", Device: 0, Name: "Loopback PCM", Playback: true, Capture: true}}
	var b bytes.Buffer
	if err := writeList(&b, cams, pcms); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"cameras:\n", "v4l2:/dev/video0  USB Cam (driver uvcvideo, usb-1)", "also v4l2:/dev/v4l/by-id/usb-Cam-video-index0",
		"MJPG Motion-JPEG [encode]", "(/dev/video13 bcm2835-isp: a Pi camera pipeline node; use the camera through rpicam)", "1280x720 @ 30 fps", "RGB3 RGB [not usable]",
		"microphones:\n  test", "alsa:plughw:CARD=Loopback,DEV=0  Loopback: Loopback PCM", "speakers:\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
	// The machine's own listing works whatever it has.
	if err := List(&bytes.Buffer{}); err != nil {
		t.Errorf("List: %v", err)
	}
}

func TestOpenCameraErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	for _, c := range []struct {
		spec string
		o    VideoOptions
		want string
	}{
		{"v4l2:/dev/video-none", VideoOptions{}, "/dev/video-none"},
		{"v4l2:/dev/video0", VideoOptions{Encoder: "x265"}, "video.encoder"},
		{"v4l2:/dev/video0", VideoOptions{Encoder: "rpicam"}, "rpicam"},
	} {
		cam, err := OpenCamera(ctx, c.spec, c.o, log)
		if err == nil {
			cam.Close()
			t.Errorf("%s %+v opened", c.spec, c.o)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q lacks %q", c.spec, err, c.want)
		}
	}
}
