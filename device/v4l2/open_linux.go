package v4l2

import (
	"errors"
	"reflect"
	"syscall"

	"github.com/blackjack/webcam"
	"golang.org/x/sys/unix"
)

// openWebcam opens path with blackjack/webcam, whose descriptor lacks O_CLOEXEC. Left so,
// every child process started later (arecord, aplay, rpicam-vid, ffmpeg) would inherit the
// camera and hold it after an unplug: the kernel keeps the old device alive, a replugged
// camera gets another /dev/videoN, and vivid's simulated unplug never ends. ForkLock keeps a
// fork from slipping in between the open and the flag.
func openWebcam(path string) (*webcam.Webcam, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	cam, err := webcam.Open(path)
	if err != nil {
		return nil, err
	}
	fd, err := webcamFD(cam)
	if err != nil {
		cam.Close()
		return nil, err
	}
	unix.CloseOnExec(fd)
	return cam, nil
}

// webcamFD reads the descriptor blackjack/webcam keeps unexported.
func webcamFD(cam *webcam.Webcam) (int, error) {
	f := reflect.ValueOf(cam).Elem().FieldByName("fd")
	if !f.IsValid() || f.Kind() != reflect.Uintptr {
		return -1, errors.New("v4l2: blackjack/webcam keeps no fd field any more: update openWebcam")
	}
	return int(f.Uint()), nil
}
