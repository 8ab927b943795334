package clustertest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// CutProxy forwards TCP on loopback to a target (Redis) until cut: then it drops every
// connection and refuses new ones, as a hub cut off from Redis (or a dead one) looks from
// the other side; uncut, it forwards again.
type CutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	isCut bool
	conns []net.Conn
}

// NewCutProxy listens on 127.0.0.1 and forwards to target (host:port) until the test ends.
func NewCutProxy(t testing.TB, target string) *CutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &CutProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.Cut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.isCut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

// Addr is the proxy's host:port.
func (p *CutProxy) Addr() string { return p.ln.Addr().String() }

// Cut drops every connection and refuses new ones (on), or forwards again (off).
func (p *CutProxy) Cut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = on
	if on {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}
