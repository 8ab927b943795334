package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/pion/webrtc/v4"
	"golang.org/x/sys/unix"

	"github.com/camagent/camagent/device/h264"
)

// V4L2 control ioctls (linux/videodev2.h): VIDIOC_QUERYCTRL and VIDIOC_S_CTRL.
const (
	vidiocQueryCtrl  = 0xc0445624 // _IOWR('V', 36, struct v4l2_queryctrl)
	vidiocSCtrl      = 0xc008561c // _IOWR('V', 28, struct v4l2_control)
	ctrlFlagNextCtrl = 0x80000000
)

type v4l2QueryCtrl struct {
	ID, Type                uint32
	Name                    [32]byte
	Min, Max, Step, Default int32
	Flags                   uint32
	Reserved                [2]uint32
}

type v4l2Control struct {
	ID    uint32
	Value int32
}

var _ = [1]struct{}{}[unsafe.Sizeof(v4l2QueryCtrl{})-68] // the kernel's size

// unplugCamera presses vivid's "Disconnect" button: the camera behaves as an unplugged USB
// camera (every ioctl fails) until the last file handle on it is closed, then comes back.
func unplugCamera(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close() // the camera returns once the agent has let go of it too
	q := v4l2QueryCtrl{ID: ctrlFlagNextCtrl}
	for {
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), vidiocQueryCtrl, uintptr(unsafe.Pointer(&q))); errno != 0 {
			return fmt.Errorf("%s has no Disconnect control (VIDIOC_QUERYCTRL: %v)", dev, errno)
		}
		if string(bytes.TrimRight(q.Name[:], "\x00")) == "Disconnect" {
			break
		}
		q.ID |= ctrlFlagNextCtrl
	}
	c := v4l2Control{ID: q.ID}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), vidiocSCtrl, uintptr(unsafe.Pointer(&c))); errno != 0 {
		return fmt.Errorf("press Disconnect on %s: %v", dev, errno)
	}
	return nil
}

// stoppedMs is a gap in the video that means the camera stopped: 2.5 frame intervals at the
// VM test's 10 fps (the agent reopens the camera within 250 ms to a few seconds).
const stoppedMs = 250

// hotUnplug unplugs the device's camera mid-call and follows its video until the picture
// is back: the longest gap between frames, and the frames and keyframes after it.
func hotUnplug(ctx context.Context, track *webrtc.TrackRemote, r *Result) error {
	frames := make(chan bool, 256) // one per frame: is it a keyframe
	go func() {
		var aus assembler
		for ctx.Err() == nil {
			track.SetReadDeadline(time.Now().Add(time.Second))
			pkt, _, err := track.ReadRTP()
			if err != nil {
				continue
			}
			if au, done := aus.push(pkt); done {
				select {
				case frames <- h264.IsKeyframe(au):
				default:
				}
			}
		}
	}()
	if err := unplugCamera("/dev/video0"); err != nil {
		return err
	}
	logf("camera unplugged")
	unplugged, last := time.Now(), time.Now()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case key := <-frames:
			now := time.Now()
			if gap := now.Sub(last); gap > time.Duration(r.UnplugGapMs)*time.Millisecond {
				r.UnplugGapMs = gap.Milliseconds()
			}
			last = now
			if r.UnplugGapMs >= stoppedMs { // the picture stopped and is back
				r.FramesAfterUnplug++
				if key {
					r.KeyframesAfterUnplug++
				}
				if r.FramesAfterUnplug >= 10 {
					logf("picture back %s after the unplug", now.Sub(unplugged).Round(time.Millisecond))
					return nil
				}
			}
		case <-deadline:
			return fmt.Errorf("camera unplugged: %d frames after a gap of %d ms in 60 s", r.FramesAfterUnplug, r.UnplugGapMs)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
