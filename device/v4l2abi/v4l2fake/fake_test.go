package v4l2fake

import (
	"errors"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/camagent/camagent/device/v4l2abi"
)

type echo struct{ asked []uintptr }

func (e *echo) Handle(n *Node, req uintptr, arg unsafe.Pointer) error {
	e.asked = append(e.asked, req)
	n.Logf("%s", v4l2abi.RequestName(req))
	return nil
}

func (e *echo) Ready(*Node) (bool, bool) { return true, false }

// TestNodeFaults: the node passes requests to its driver until it is unplugged (ENODEV, poll
// error) or closed (EBADF); mappings are counted until unmapped.
func TestNodeFaults(t *testing.T) {
	d := &echo{}
	n := New(d)
	if _, err := v4l2abi.QueryCap(n); err != nil || len(d.asked) != 1 || d.asked[0] != v4l2abi.VidiocQuerycap {
		t.Fatalf("QUERYCAP: %v, driver asked %x", err, d.asked)
	}
	m, err := n.Mmap(1<<16, 64)
	if err != nil || len(m) != 64 || &n.Mem(1 << 16)[0] != &m[0] || n.Mapped() != 1 {
		t.Fatalf("Mmap: %v, %d bytes, mapped %d", err, len(m), n.Mapped())
	}
	if in, out, err := n.Poll(time.Second); !in || out || err != nil {
		t.Fatalf("Poll: %v %v %v", in, out, err)
	}
	n.Unplug()
	if err := v4l2abi.SetControl(n, v4l2abi.CIDForceKeyFrame, 1); !errors.Is(err, syscall.ENODEV) {
		t.Errorf("S_CTRL on an unplugged node: %v", err)
	}
	if _, _, err := n.Poll(time.Second); !errors.Is(err, ErrGone) {
		t.Errorf("Poll on an unplugged node: %v", err)
	}
	if len(d.asked) != 1 {
		t.Errorf("the driver was asked %d times, want once (nothing after the unplug)", len(d.asked))
	}
	n.Munmap(m)
	n.Close()
	if _, err := v4l2abi.QueryCap(n); !errors.Is(err, syscall.EBADF) || !n.Closed() || n.Mapped() != 0 {
		t.Errorf("after Close: %v, closed %v, mapped %d", err, n.Closed(), n.Mapped())
	}
	if got := n.Log(); len(got) != 2 || got[0] != "VIDIOC_QUERYCAP" || got[1] != "close" {
		t.Errorf("log %q", got)
	}
}
