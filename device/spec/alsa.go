package spec

import (
	"context"
	"errors"
	"log/slog"

	"github.com/camagent/camagent/device"
)

func alsaAvailable() bool { return false }

func openALSASpeaker(ctx context.Context, dev string, log *slog.Logger) (device.Speaker, error) {
	return nil, errors.New("alsa: pending")
}

func openALSAMicrophone(ctx context.Context, dev string, log *slog.Logger) (device.Microphone, error) {
	return nil, errors.New("alsa: pending")
}
