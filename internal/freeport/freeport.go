// Package freeport picks loopback ports for the servers that tests and benches start
// (nats-server, mosquitto, hubs, coturn). A port taken from the kernel with "listen on :0" is
// in the ephemeral range, which is also where every outgoing connection on the machine gets
// its source port: between the pick and the server's bind another process can take it (CI saw
// a nats-server fail with "address already in use"). The ports here come from below that
// range, where only listeners bind, and each is checked free for TCP and UDP; one process
// never gets the same port twice.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// floor is the lowest port handed out: above the well-known service ports (Redis 6379,
// MQTT 1883/8883, HTTP alternatives 8000–8999).
const floor = 15000

var (
	mu     sync.Mutex
	given  = map[int]bool{}
	ephLow = ephemeralLow()
)

// ephemeralLow reads the first port of the kernel's ephemeral range (32768 when unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// Port returns a port on 127.0.0.1 that is free for TCP and UDP now, outside the ephemeral
// range when the range leaves room below it, and never returned before by this process.
func Port() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if ephLow-floor < 1000 {
		return kernelPort()
	}
	for range 200 {
		p := floor + rand.IntN(ephLow-floor)
		if given[p] || !free(p) {
			continue
		}
		given[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port in %d–%d after 200 tries", floor, ephLow-1)
}

// Addr is Port as "127.0.0.1:port".
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// kernelPort is the fallback when the ephemeral range starts too low: the kernel's pick.
func kernelPort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("freeport: %w", err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !given[p] && free(p) {
			given[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("freeport: the kernel gave no unused port in 20 tries")
}

func free(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
