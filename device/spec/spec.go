// Package spec turns the command line's device SPECs into devices:
//
//	test              synthetic: the test-pattern camera, the tone microphone
//	wav:PATH          a WAV file: read (looped, in real time) as a microphone, written as a speaker
//	alsa:DEVICE       ALSA through alsa-lib (alsa:default, alsa:plughw:1,0)
//	v4l2:/dev/videoN  a V4L2 camera (or a /dev/v4l/by-id link): H.264 passed through, raw
//	                  pictures encoded (the Pi's M2M encoder, else pure-Go software)
//	rpicam[:ARGS]     a Pi CSI camera through rpicam-vid (extra rpicam-vid arguments after ':')
//	null              nothing: no track is published, or the sound goes nowhere
//	auto              (speaker only) ALSA "default" when the machine has a sound card, else a WAV file
//
// A nil device with a nil error means "null": the caller publishes no track for it.
package spec

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/device/wav"
)

// VideoOptions configure a camera. Zero fields choose automatically.
type VideoOptions struct {
	// Width, Height, FPS: the wanted picture size and rate (a V4L2 camera gets the
	// nearest it offers).
	Width, Height, FPS int
	// Encoder: auto (default), passthrough, m2m, rpicam or software; see Encoders.
	Encoder string
	// Format restricts a V4L2 camera's pixel format: h264, mjpeg, yuyv, nv12, i420, yv12.
	Format string
	// Bitrate in bit/s for encoders that have one (m2m, rpicam); 0: the encoder's default.
	Bitrate int
	// GOP is the time between periodic IDRs (default 2 s).
	GOP time.Duration
	// OnError, when set, makes a V4L2 or rpicam camera keep going through failures
	// (unplugged, stalled): it is called with each failure, the camera is reopened with
	// back-off, and ReadSample returns only when ctx ends or the camera is closed.
	// Without it ReadSample returns the failure.
	OnError func(error)
}

// Encoders are the values VideoOptions.Encoder accepts.
var Encoders = []string{"auto", "passthrough", "m2m", "rpicam", "software"}

func split(s string) (kind, arg string) {
	kind, arg, _ = strings.Cut(s, ":")
	return kind, arg
}

// Check reports whether a SPEC is well-formed for a role ("camera", "microphone", "speaker").
func Check(role, s string) error {
	kind, arg := split(s)
	ok := map[string][]string{
		"camera":     {"test", "null", "v4l2", "rpicam"},
		"microphone": {"test", "null", "wav", "alsa"},
		"speaker":    {"auto", "null", "wav", "alsa"},
	}[role]
	for _, k := range ok {
		if k == kind {
			if (kind == "wav" || kind == "alsa" || kind == "v4l2") && arg == "" {
				return fmt.Errorf("%s %q: %s needs an argument (%s:…)", role, s, kind, kind)
			}
			return nil
		}
	}
	return fmt.Errorf("%s %q: unknown kind %q (want one of %s)", role, s, kind, strings.Join(ok, ", "))
}

// OpenCamera opens a camera SPEC.
func OpenCamera(ctx context.Context, s string, o VideoOptions, log *slog.Logger) (device.VideoSource, error) {
	if err := Check("camera", s); err != nil {
		return nil, err
	}
	kind, arg := split(s)
	switch kind {
	case "test":
		return synth.NewCamera(synth.CameraOptions{Width: o.Width, Height: o.Height, FPS: o.FPS})
	case "null":
		return nil, nil
	case "v4l2":
		return openV4L2(ctx, arg, o, log)
	case "rpicam":
		return openRpicam(ctx, arg, o, log)
	}
	return nil, fmt.Errorf("camera %s:%s: not available in this build yet", kind, arg)
}

// OpenMicrophone opens a microphone SPEC; toneHz is the synthetic tone's frequency.
func OpenMicrophone(ctx context.Context, s string, toneHz float64, log *slog.Logger) (device.Microphone, error) {
	if err := Check("microphone", s); err != nil {
		return nil, err
	}
	kind, arg := split(s)
	switch kind {
	case "test":
		return audio.NewTone(toneHz, 0.3), nil
	case "wav":
		return wav.OpenMicrophone(arg)
	case "alsa":
		return openALSAMicrophone(ctx, arg, log)
	}
	return nil, nil
}

// OpenSpeaker opens a speaker SPEC; stateDir is where "auto" writes its WAV file.
func OpenSpeaker(ctx context.Context, s, stateDir string, log *slog.Logger) (device.Speaker, error) {
	if err := Check("speaker", s); err != nil {
		return nil, err
	}
	kind, arg := split(s)
	switch kind {
	case "auto":
		if alsaAvailable() {
			log.Info("speaker: playing on ALSA", "device", "default")
			return openALSASpeaker(ctx, "default", log)
		}
		path := filepath.Join(stateDir, "speaker.wav")
		if err := os.MkdirAll(stateDir, 0o755); err != nil {
			return nil, fmt.Errorf("speaker: create %s: %w", stateDir, err)
		}
		log.Info("speaker: no sound card; writing what the device hears to a WAV file", "path", path)
		return wav.Create(path)
	case "wav":
		log.Info("speaker: writing to WAV file", "path", arg)
		return wav.Create(arg)
	case "alsa":
		return openALSASpeaker(ctx, arg, log)
	}
	return nil, nil
}
