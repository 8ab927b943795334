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

	"github.com/camagent/camagent/internal/freeport"
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
	url, stop, err := Start(t.TempDir(), password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out := stop(); t.Failed() {
			t.Logf("redis-server output:\n%s", out)
		}
	})
	return url
}

// Start runs redis-server (files in dir) until stop, which returns its output; url is as
// StartRedis's. For programs (make scale) as well as tests.
func Start(dir, password string) (url string, stop func() string, err error) {
	port, err := freeport.Port()
	if err != nil {
		return "", nil, fmt.Errorf("find a free port: %w", err)
	}
	args := []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--loglevel", "warning"}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	cmd := exec.Command(Binary, args...)
	var out bytes.Buffer // its start-up banner and warnings
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	stop = func() string {
		cmd.Process.Kill()
		cmd.Wait()
		return out.String()
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); !ping(addr, password); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("redis-server on %s did not answer PING:\n%s", addr, stop())
		}
	}
	if password != "" {
		return "redis://:" + password + "@" + addr, stop, nil
	}
	return "redis://" + addr, stop, nil
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
