// Package v4l2fake is a fake V4L2 device node for tests: a v4l2abi.Device whose ioctls a
// driver model answers, while the node itself keeps what every node has: the memory its
// buffers are mapped from, a log of what was asked, and the ways a real node fails (closed:
// EBADF; unplugged: ENODEV on every ioctl and an error condition on poll). device/m2m's fake
// encoder and device/v4l2's fake camera are drivers on it.
package v4l2fake

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/camagent/camagent/device/v4l2abi"
)

// Driver models a device's behaviour behind a Node.
type Driver interface {
	// Handle answers one ioctl request on arg (the request's struct), as the kernel driver
	// would.
	Handle(n *Node, req uintptr, arg unsafe.Pointer) error
	// Ready reports whether a buffer can be dequeued (in) or an output buffer is done (out).
	Ready(n *Node) (in, out bool)
}

// Node is a fake device node; New makes one.
type Node struct {
	d Driver

	mu     sync.Mutex
	log    []string
	mem    map[int64][]byte
	mapped int
	closed bool
	gone   bool
}

var _ v4l2abi.Device = (*Node)(nil)

// ErrGone is Poll's error on an unplugged node (a real node reports POLLERR).
var ErrGone = errors.New("v4l2fake: poll: device error (unplugged)")

// New returns a node whose requests d answers.
func New(d Driver) *Node { return &Node{d: d, mem: map[int64][]byte{}} }

// SetDriver sets the node's driver (for a driver that embeds its node).
func (n *Node) SetDriver(d Driver) { n.d = d }

// Logf adds a line to the node's log (drivers note what they were asked).
func (n *Node) Logf(format string, a ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = append(n.log, fmt.Sprintf(format, a...))
}

// Log returns the log so far; ResetLog empties it.
func (n *Node) Log() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.log...)
}

// ResetLog empties the log.
func (n *Node) ResetLog() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = nil
}

// Ioctl passes req to the driver, unless the node is closed (EBADF) or gone (ENODEV).
func (n *Node) Ioctl(req uintptr, arg unsafe.Pointer) error {
	n.mu.Lock()
	closed, gone := n.closed, n.gone
	n.mu.Unlock()
	switch {
	case closed:
		return syscall.EBADF
	case gone:
		return syscall.ENODEV
	}
	return n.d.Handle(n, req, arg)
}

// Mmap maps length bytes at offset: fresh memory the driver finds with Mem.
func (n *Node) Mmap(offset int64, length int) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, syscall.EBADF
	}
	if n.gone {
		return nil, syscall.ENODEV
	}
	m := make([]byte, length)
	n.mem[offset] = m
	n.mapped++
	return m, nil
}

// Mem returns the memory mapped at offset (nil: none).
func (n *Node) Mem(offset int64) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mem[offset]
}

// Munmap unmaps a mapping (it works on a gone node, as munmap does).
func (n *Node) Munmap(b []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mapped--
	return nil
}

// Mapped is the number of mappings not unmapped yet.
func (n *Node) Mapped() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mapped
}

// Poll asks the driver, at once (a fake never waits); a gone node fails with ErrGone.
func (n *Node) Poll(time.Duration) (in, out bool, err error) {
	n.mu.Lock()
	closed, gone := n.closed, n.gone
	n.mu.Unlock()
	switch {
	case closed:
		return false, false, syscall.EBADF
	case gone:
		return false, false, ErrGone
	}
	in, out = n.d.Ready(n)
	return in, out, nil
}

// Close closes the node (logged as "close").
func (n *Node) Close() error {
	n.Logf("close")
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return nil
}

// Closed reports whether Close was called.
func (n *Node) Closed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Unplug makes the device disappear: every later ioctl fails with ENODEV and poll with ErrGone.
func (n *Node) Unplug() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gone = true
}
