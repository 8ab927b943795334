package spec

import (
	"context"
	"log/slog"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/alsa"
)

func alsaAvailable() bool { return alsa.Available() }

func openALSASpeaker(ctx context.Context, dev string, log *slog.Logger) (device.Speaker, error) {
	return alsa.OpenSpeaker(ctx, dev, alsa.Options{Logger: log})
}

func openALSAMicrophone(ctx context.Context, dev string, log *slog.Logger) (device.Microphone, error) {
	return alsa.OpenMicrophone(ctx, dev, alsa.Options{Logger: log})
}
