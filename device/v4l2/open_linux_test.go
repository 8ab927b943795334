package v4l2

import (
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/blackjack/webcam"
	"golang.org/x/sys/unix"
)

// TestWebcamFD: the descriptor openWebcam marks close-on-exec is the one blackjack/webcam
// uses (this machine may have no camera: a Webcam is built around a file opened here), and a
// child process does not inherit it once marked.
func TestWebcamFD(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd())) // without O_CLOEXEC, as webcam.Open leaves it
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cam := &webcam.Webcam{}
	field := reflect.ValueOf(cam).Elem().FieldByName("fd")
	if !field.IsValid() {
		t.Fatal("blackjack/webcam has no fd field")
	}
	*(*uintptr)(unsafe.Pointer(field.UnsafeAddr())) = uintptr(fd)
	got, err := webcamFD(cam)
	if err != nil || got != fd {
		t.Fatalf("webcamFD = %d, %v; want %d", got, err, fd)
	}
	inherited := func() bool {
		out, err := exec.Command("/bin/sh", "-c", "ls /proc/self/fd").Output()
		if err != nil {
			t.Fatal(err)
		}
		// exec.Cmd passes only stdin/out/err (0-2): an inherited descriptor is one that
		// survives exec because it lacks FD_CLOEXEC — it shows up by its number.
		for _, n := range strings.Fields(string(out)) {
			if n == strconv.Itoa(fd) {
				return true
			}
		}
		return false
	}
	if !inherited() {
		t.Fatal("a child process did not inherit a descriptor without FD_CLOEXEC: the test proves nothing")
	}
	unix.CloseOnExec(got)
	if inherited() {
		t.Error("a child process inherited the descriptor after CloseOnExec")
	}
}
