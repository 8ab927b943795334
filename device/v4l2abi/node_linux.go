package v4l2abi

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Node is an open device node.
type Node struct{ fd int }

var _ Device = (*Node)(nil)

// Open opens a device node (e.g. /dev/video11) read-write, non-blocking and close-on-exec.
func Open(path string) (*Node, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Node{fd: fd}, nil
}

// Ioctl performs req on arg, again when a signal interrupts it (EINTR).
func (n *Node) Ioctl(req uintptr, arg unsafe.Pointer) error { return Ioctl(n.fd, req, arg) }

// Ioctl performs req on the descriptor fd, again when a signal interrupts it (EINTR).
func Ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
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

// Mmap maps length bytes of the node at offset, shared, read-write.
func (n *Node) Mmap(offset int64, length int) ([]byte, error) {
	return unix.Mmap(n.fd, offset, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// Munmap unmaps what Mmap mapped.
func (n *Node) Munmap(b []byte) error { return unix.Munmap(b) }

// Poll waits up to timeout for the node to be readable (in) or writable (out); an error
// condition without either is an error.
func (n *Node) Poll(timeout time.Duration) (in, out bool, err error) {
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
			return false, false, fmt.Errorf("poll: device error (revents %#x)", fds[0].Revents)
		}
		return fds[0].Revents&unix.POLLIN != 0, fds[0].Revents&unix.POLLOUT != 0, nil
	}
}

// Close closes the node.
func (n *Node) Close() error { return unix.Close(n.fd) }
