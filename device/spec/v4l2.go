package spec

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/encode"
	"github.com/camagent/camagent/device/reopen"
	"github.com/camagent/camagent/device/v4l2"
)

// rawEncoder returns the encoder factory for raw camera pictures under an Encoder mode,
// and why it was chosen (logged when a camera opens). The order is the cheapest first:
// the hardware encoder, then x264 in an ffmpeg subprocess, then the pure-Go lossless
// encoder, which always works.
func rawEncoder(o VideoOptions, log *slog.Logger) (func(w, h, fps int) (encode.Encoder, error), string, error) {
	pureGo := func(w, h, fps int) (encode.Encoder, error) { return encode.NewSoftware(w, h, fps, o.GOP) }
	software := func(prefix string) (func(w, h, fps int) (encode.Encoder, error), string) {
		if err := encode.FFmpegAvailable(""); err != nil {
			return pureGo, prefix + err.Error() + ": pure-Go software encoder (lossless, high bit rate)"
		}
		return func(w, h, fps int) (encode.Encoder, error) {
			return encode.NewFFmpeg(encode.FFmpegOptions{Width: w, Height: h, FPS: fps, Bitrate: o.Bitrate, GOP: o.GOP, Logger: log})
		}, prefix + "software encoder x264 (ffmpeg subprocess)"
	}
	switch o.Encoder {
	case "", "auto":
		f, why, err := hardwareEncoder(o, log)
		if err != nil {
			f, why = software(err.Error() + "; ")
		}
		return f, why, nil
	case "m2m":
		f, why, err := hardwareEncoder(o, log)
		if err != nil {
			return nil, "", fmt.Errorf("video.encoder m2m: %w", err)
		}
		return f, why, nil
	case "software":
		f, why := software("configured software; ")
		return f, why, nil
	case "passthrough":
		return nil, "configured: H.264 from the camera only", nil
	}
	return nil, "", fmt.Errorf("video.encoder %q: want one of %v", o.Encoder, Encoders)
}

func openV4L2(ctx context.Context, path string, o VideoOptions, log *slog.Logger) (device.VideoSource, error) {
	if o.Encoder != "" && !slices.Contains(Encoders, o.Encoder) {
		return nil, fmt.Errorf("video.encoder %q: want one of %v", o.Encoder, Encoders)
	}
	if o.Encoder == "rpicam" {
		return nil, fmt.Errorf("video.encoder rpicam goes with camera rpicam, not v4l2:%s", path)
	}
	newEnc, why, err := rawEncoder(o, log)
	if err != nil {
		return nil, err
	}
	mode := "auto"
	switch o.Encoder {
	case "passthrough":
		mode = "passthrough"
	case "software", "m2m":
		mode = "software" // always encode raw pictures, with the encoder chosen above
	}
	vo := v4l2.Options{Width: o.Width, Height: o.Height, FPS: o.FPS, Format: o.Format, Encoder: mode,
		NewEncoder: newEnc, Logger: log}
	open := func(ctx context.Context) (device.VideoSource, error) {
		c, err := v4l2.Open(path, vo)
		if err != nil {
			return nil, err
		}
		if !c.Choice().Passthrough() {
			log.Info("camera: encoder chosen", "device", path, "why", why)
		}
		return c, nil
	}
	if o.OnError == nil {
		return open(ctx)
	}
	return reopen.New(ctx, open, o.OnError)
}
