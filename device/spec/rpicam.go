package spec

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/reopen"
	"github.com/camagent/camagent/device/rpicam"
)

// openRpicam runs rpicam-vid; arg (after "rpicam:") holds extra rpicam-vid arguments,
// e.g. "rpicam:--camera 1 --rotation 180".
func openRpicam(ctx context.Context, arg string, o VideoOptions, log *slog.Logger) (device.VideoSource, error) {
	switch o.Encoder {
	case "", "auto", "rpicam", "passthrough":
	default:
		return nil, fmt.Errorf("video.encoder %q does not go with camera rpicam (rpicam-vid encodes itself: use auto or rpicam)", o.Encoder)
	}
	ro := rpicam.Options{Width: o.Width, Height: o.Height, FPS: o.FPS, Bitrate: o.Bitrate, Args: strings.Fields(arg), Logger: log}
	if o.GOP > 0 && o.FPS > 0 {
		ro.Intra = max(1, int(math.Round(o.GOP.Seconds()*float64(o.FPS))))
	}
	open := func(ctx context.Context) (device.VideoSource, error) { return rpicam.Open(ro) }
	if o.OnError == nil {
		return open(ctx)
	}
	return reopen.New(ctx, open, o.OnError)
}
