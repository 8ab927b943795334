// Package deadaddr gives tests real loopback addresses that fail the two ways a hub can be
// out of reach: Blackhole drops SYNs (a dial times out, as over a cut path), Closed refuses.
package deadaddr

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Blackhole returns the address of a loopback listener that never accepts, with the
// smallest backlog: once its queue is full the kernel drops further SYNs, so a dial to it
// times out the way a dial over a cut path does.
func Blackhole(t testing.TB) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
	// Fill the accept queue (backlog 0 holds one) and the SYN queue behind it.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // full: this dial already timed out
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("%s still accepts connections after 8: not a blackhole", addr)
	return ""
}

// Closed returns a loopback port nothing listens on: connects are refused (RST).
func Closed(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
