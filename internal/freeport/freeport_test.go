package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsBelowEphemeralAndUsable: every port is bindable for TCP and UDP, is below the
// kernel's ephemeral range (when the range leaves room), and none repeats.
func TestPortsBelowEphemeralAndUsable(t *testing.T) {
	seen := map[int]bool{}
	for range 100 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if ephLow-floor >= 1000 && (p < floor || p >= ephLow) {
			t.Fatalf("port %d outside %d–%d", p, floor, ephLow-1)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		ln.Close()
	}
}

// TestSkipsTakenPort: a port somebody listens on is never handed out.
func TestSkipsTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	if free(taken) {
		t.Fatalf("port %d reported free while listened on", taken)
	}
}
