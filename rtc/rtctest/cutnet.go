package rtctest

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// CutNet is the host's network for pion's ICE agent (rtc.APIOptions.Net) with a switch that
// kills every UDP socket opened so far, silently, in both directions: what a client sees
// when its NAT forgets a mapping or its Wi-Fi hands over. Sockets opened after the cut work,
// so an ICE restart (which gathers anew) finds a path again; without one the media is gone.
type CutNet struct {
	transport.Net
	mu    sync.Mutex
	conns []*cutConn
}

// NewCutNet wraps the host's network.
func NewCutNet() (*CutNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("rtctest: host network: %w", err)
	}
	return &CutNet{Net: n}, nil
}

// ListenUDP opens a socket that Cut can kill.
func (n *CutNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	cc := &cutConn{UDPConn: c}
	n.mu.Lock()
	n.conns = append(n.conns, cc)
	n.mu.Unlock()
	return cc, nil
}

// Cut kills the sockets opened so far and returns how many.
func (n *CutNet) Cut() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.dead.Store(true)
	}
	k := len(n.conns)
	n.conns = nil
	return k
}

// cutConn drops what it would send and what it receives once dead.
type cutConn struct {
	transport.UDPConn
	dead atomic.Bool
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.dead.Load() {
		return len(b), nil
	}
	return c.UDPConn.Write(b)
}

func (c *cutConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if c.dead.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteTo(b, a)
}

func (c *cutConn) WriteToUDP(b []byte, a *net.UDPAddr) (int, error) {
	if c.dead.Load() {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDP(b, a)
}

func (c *cutConn) WriteMsgUDP(b, oob []byte, a *net.UDPAddr) (int, int, error) {
	if c.dead.Load() {
		return len(b), len(oob), nil
	}
	return c.UDPConn.WriteMsgUDP(b, oob, a)
}

func (c *cutConn) Read(b []byte) (int, error) {
	for {
		n, err := c.UDPConn.Read(b)
		if err != nil || !c.dead.Load() {
			return n, err
		}
	}
}

func (c *cutConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.UDPConn.ReadFrom(b)
		if err != nil || !c.dead.Load() {
			return n, a, err
		}
	}
}

func (c *cutConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	for {
		n, a, err := c.UDPConn.ReadFromUDP(b)
		if err != nil || !c.dead.Load() {
			return n, a, err
		}
	}
}

func (c *cutConn) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	for {
		n, oobn, flags, a, err := c.UDPConn.ReadMsgUDP(b, oob)
		if err != nil || !c.dead.Load() {
			return n, oobn, flags, a, err
		}
	}
}
