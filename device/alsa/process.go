package alsa

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/internal/backoff"
)

// startWait is how long Open waits for aplay/arecord to fail at start-up (a bad
// device name, a busy card) so that the error is returned by Open itself.
const startWait = 200 * time.Millisecond

// process is one running aplay or arecord with a pipe to its stdin or from its stdout.
type process struct {
	name    string // "aplay" or "arecord", for messages
	cmd     *exec.Cmd
	pipe    *os.File // our end: stdin's writer (playback) or stdout's reader (capture)
	stderr  *tail
	exited  chan struct{}
	exitErr error // valid once exited is closed
	started time.Time
}

// startProcess starts path with args; toChild selects a pipe to its stdin (playback)
// rather than from its stdout (capture).
func startProcess(name, path string, args, env []string, toChild bool) (*process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("alsa: %s: pipe: %w", name, err)
	}
	p := &process{name: name, stderr: &tail{max: 2048}, exited: make(chan struct{})}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = p.stderr
	ours, theirs := w, r
	if toChild {
		cmd.Stdin = r
	} else {
		cmd.Stdout = w
		ours, theirs = r, w
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("alsa: start %s: %w", name, err)
	}
	theirs.Close()
	setPipeSize(ours)
	p.cmd, p.pipe, p.started = cmd, ours, time.Now()
	go func() {
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// checkStart waits up to startWait for an early exit and reports it as an error.
func (p *process) checkStart(done <-chan struct{}) error {
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-p.exited:
		p.pipe.Close()
		return p.exitReason()
	case <-t.C:
	case <-done:
	}
	return nil
}

// exitReason describes how the process ended, with the end of its stderr, e.g.
// "aplay: exit status 1: aplay: main:831: audio open error: …". Call it after exited
// is closed; callers prefix it with "alsa: " and what they were doing.
func (p *process) exitReason() error {
	msg := p.stderr.String()
	err := p.exitErr
	if err == nil {
		err = errors.New("exited")
	}
	if msg != "" {
		return fmt.Errorf("%s: %w: %s", p.name, err, msg)
	}
	return fmt.Errorf("%s: %w", p.name, err)
}

// stop ends the process: it closes our pipe end (aplay then drains its buffer and
// exits), waits up to grace, then kills it. It returns once the process has exited.
func (p *process) stop(grace time.Duration) {
	p.pipe.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return
	case <-t.C:
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// tail keeps the last max bytes written to it (a subprocess's stderr).
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

// String returns the kept text on one line, its lines joined by " | ".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, " | ")
}

// newBackoff is the delay between restarts of arecord or aplay: 100 ms doubling to 5 s,
// jittered (internal/backoff).
func newBackoff() *backoff.Backoff { return backoff.New(100*time.Millisecond, 5*time.Second) }

// healthyAfter is how long a process must run before its exit no longer counts
// towards the back-off.
const healthyAfter = 10 * time.Second
