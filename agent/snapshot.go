package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/spec"
	"github.com/camagent/camagent/device/still"
)

// Snapshots: in a call the JPEG is made from the picture the camera delivered last (the
// one viewers saw); idle, the camera is opened for the snapshot, a few pictures are read
// (so auto exposure can settle), and it is closed again.

// snapshotWarmup is how long an idle snapshot lets a camera run before keeping a picture
// (auto exposure and white balance settle in a few hundred milliseconds on USB cameras).
// The synthetic camera needs none.
const snapshotWarmup = 300 * time.Millisecond

// snapshotTimeout bounds one snapshot, opening the camera included.
const snapshotTimeout = 10 * time.Second

func (a *Agent) snapshot(ctx context.Context, cmd control.Command) error {
	if a.privacy.Load() {
		return ErrPrivacy
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	pic, err := a.picture(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	o := still.Options{MaxBytes: control.MaxSnapshotSize}
	if cmd.MaxWidth != nil {
		o.MaxWidth = *cmd.MaxWidth
	}
	start := time.Now()
	r, err := still.JPEG(pic, o)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := a.ctrl.PublishSnapshot(r.JPEG); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	a.log.Info("snapshot published", "bytes", len(r.JPEG), "width", r.Width, "height", r.Height,
		"quality", r.Quality, "passthrough", r.Passthrough, "encode", time.Since(start).Round(time.Millisecond))
	control.ReplySnapshot(ctx, control.SnapshotInfo{Bytes: len(r.JPEG), Width: r.Width, Height: r.Height,
		CaptureTime: pic.CaptureTime.UTC(), Topic: a.ctrl.Topics().Snapshot()})
	return nil
}

// picture returns the current picture: the call's camera's latest, or one from the camera
// opened for the purpose.
func (a *Agent) picture(ctx context.Context) (device.Picture, error) {
	a.mu.Lock()
	c := a.call
	a.mu.Unlock()
	if c != nil && c.cam != nil {
		return latestPicture(ctx, c.cam)
	}
	cfg := a.cfg
	cam, err := spec.OpenCamera(ctx, cfg.Camera, spec.VideoOptions{Width: cfg.Width, Height: cfg.Height,
		FPS: cfg.FPS, Encoder: cfg.Encoder, Format: cfg.PixelFormat, Bitrate: cfg.Bitrate, GOP: cfg.GOP}, a.log)
	if err != nil {
		return device.Picture{}, fmt.Errorf("open camera %q: %w", cfg.Camera, err)
	}
	if cam == nil {
		return device.Picture{}, errors.New(`no camera (camera "null")`)
	}
	defer cam.Close()
	if _, ok := cam.(device.StillSource); !ok {
		return device.Picture{}, device.ErrNoStill
	}
	warm := time.Now().Add(snapshotWarmup)
	if cfg.Camera == "test" {
		warm = time.Now()
	}
	for {
		if _, err := cam.ReadSample(ctx); err != nil {
			return device.Picture{}, fmt.Errorf("read camera %q: %w", cfg.Camera, err)
		}
		if !time.Now().Before(warm) {
			return latestPicture(ctx, cam)
		}
	}
}

// latestPicture asks a running camera for its latest picture, waiting a little for the
// first one of a camera that has just opened.
func latestPicture(ctx context.Context, cam device.VideoSource) (device.Picture, error) {
	st, ok := cam.(device.StillSource)
	if !ok {
		return device.Picture{}, device.ErrNoStill
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		p, err := st.LatestPicture()
		if !errors.Is(err, device.ErrNoPicture) {
			return p, err
		}
		select {
		case <-ctx.Done():
			return device.Picture{}, fmt.Errorf("camera gave no picture: %w", ctx.Err())
		case <-t.C:
		}
	}
}
