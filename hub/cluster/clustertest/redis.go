// Package clustertest starts a real redis-server (Debian's) for tests of the cluster
// directory and of several hubs: on 127.0.0.1, a free port, no persistence; and a proxy to it
// that can be cut (a hub cut off from Redis).
package clustertest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Binary is Debian's redis-server (tools/test-deps.sh installs it).
const Binary = "/usr/bin/redis-server"

// StartRedis runs redis-server until the test ends and returns its URL
// (redis://127.0.0.1:PORT, or redis://:PASSWORD@127.0.0.1:PORT with a password).
// The test is skipped when redis-server is not installed.
func StartRedis(t testing.TB, password string) string {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("%s not installed (tools/test-deps.sh installs it)", Binary)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--loglevel", "warning"}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	cmd := exec.Command(Binary, args...)
	var out bytes.Buffer // its start-up banner and warnings: shown only when the test fails
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", out.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ping(addr, password) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if password != "" {
		return "redis://:" + password + "@" + addr
	}
	return "redis://" + addr
}

func ping(addr, password string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(c)
	if password != "" {
		fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
			return false
		}
	}
	fmt.Fprint(c, "*1\r\n$4\r\nPING\r\n")
	l, _ := r.ReadString('\n')
	return strings.HasPrefix(l, "+PONG")
}
