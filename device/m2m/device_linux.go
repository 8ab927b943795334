package m2m

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// node is a V4L2 device node.
type node struct{ fd int }

// OpenDevice opens a device node (e.g. /dev/video11) non-blocking.
func OpenDevice(path string) (Device, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("m2m: open %s: %w", path, err)
	}
	return &node{fd: fd}, nil
}

func (n *node) Ioctl(req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(n.fd), req, uintptr(arg))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return e
		}
	}
}

func (n *node) Mmap(offset int64, length int) ([]byte, error) {
	return unix.Mmap(n.fd, offset, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func (n *node) Munmap(b []byte) error { return unix.Munmap(b) }

func (n *node) Poll(timeout time.Duration) (in, out bool, err error) {
	fds := []unix.PollFd{{Fd: int32(n.fd), Events: unix.POLLIN | unix.POLLOUT}}
	for {
		_, err = unix.Poll(fds, int(timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, false, err
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && fds[0].Revents&(unix.POLLIN|unix.POLLOUT) == 0 {
			return false, false, fmt.Errorf("m2m: poll: device error (revents %#x)", fds[0].Revents)
		}
		return fds[0].Revents&unix.POLLIN != 0, fds[0].Revents&unix.POLLOUT != 0, nil
	}
}

func (n *node) Close() error { return unix.Close(n.fd) }
