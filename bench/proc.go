package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/camagent/camagent/internal/freeport"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100 on Linux for every
// architecture Go supports).
const clockTicks = 100

// cpuTime is a process's user+system CPU time so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// fields after "(comm)": state is field 3, utime 14, stime 15
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks, nil
}

// memKB reads VmRSS and VmHWM (peak RSS) in kB.
func memKB(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, sc.Err()
}

// cpuMeter measures one process's CPU use over a window, as a percentage of one core.
type cpuMeter struct {
	pid   int
	wall  time.Time
	cpu   time.Duration
	valid bool
}

func startCPU(pid int) cpuMeter {
	c, err := cpuTime(pid)
	return cpuMeter{pid: pid, wall: time.Now(), cpu: c, valid: err == nil}
}

// percent of one core since start.
func (m cpuMeter) percent() float64 {
	c, err := cpuTime(m.pid)
	if err != nil || !m.valid {
		return 0
	}
	return 100 * float64(c-m.cpu) / float64(time.Since(m.wall))
}

// machineMeter measures how busy the whole machine is (every process, every core) from the
// aggregate line of /proc/stat, as a percentage of one core (2 cores: at most 200).
type machineMeter struct {
	wall        time.Time
	busy, total int64
}

func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

func startMachine() machineMeter {
	b, t := machineTicks()
	return machineMeter{wall: time.Now(), busy: b, total: t}
}

func (m machineMeter) percent() float64 {
	b, _ := machineTicks()
	return 100 * float64(time.Duration(b-m.busy)*time.Second/clockTicks) / float64(time.Since(m.wall))
}

// build compiles a command of the repository (pure Go, stripped, as shipped).
func build(ctx context.Context, repo, pkg, out string, env ...string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = repo
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s %v: %v\n%s", pkg, env, err, out)
	}
	return nil
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort() (int, error) { return freeport.Port() }

// child is a program the bench started; stop ends it (SIGTERM, then SIGKILL after 5 s).
type child struct {
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func startChild(bin string, logPath string, args ...string) (*child, error) {
	return startChildEnv(bin, logPath, nil, args...)
}

// startChildEnv starts bin with env added to the bench's environment.
func startChildEnv(bin string, logPath string, env []string, args ...string) (*child, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan error, 1), log: lf}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
	c.log.Close()
}

// hubProcess is camhub running in its own process on free loopback ports.
type hubProcess struct {
	*child
	env
}

func startHubProcess(ctx context.Context, bin, dir string, e env) (*hubProcess, error) {
	web, err := freePort()
	if err != nil {
		return nil, err
	}
	mq, err := freePort()
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "hub-state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// The fan-out's hundreds of viewers all come from 127.0.0.1.
	c, err := startChildEnv(bin, filepath.Join(dir, "camhub.log"), []string{"CAMHUB_MAX_CONNECTIONS_PER_ADDRESS=2000"}, "--listen", fmt.Sprintf("127.0.0.1:%d", web),
		"--mqtt-listen", fmt.Sprintf("127.0.0.1:%d", mq), "--state-dir", state, "--log-level", "warn",
		"--demo") // the bench measures media, not logins: loopback clients are trusted
	if err != nil {
		return nil, err
	}
	e.hubURL = fmt.Sprintf("http://127.0.0.1:%d", web)
	e.broker = fmt.Sprintf("tcp://127.0.0.1:%d", mq)
	h := &hubProcess{child: c, env: e}
	if err := awaitHTTP(ctx, c, "camhub", e.hubURL+"/healthz", true); err != nil {
		return nil, err
	}
	return h, nil
}

// awaitHTTP waits up to 15 s until url answers (with 200 when need200), or the child exits;
// on failure the child is stopped.
func awaitHTTP(ctx context.Context, c *child, name, url string, need200 bool) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if !need200 || resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-c.done:
			c.log.Close()
			return fmt.Errorf("%s exited: %v (log %s)", name, err, c.log.Name())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.stop()
			return fmt.Errorf("%s did not answer %s in 15 s (log %s)", name, url, c.log.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads one counter from the hub's /metrics.
func (e *env) metric(name string) (float64, error) {
	resp, err := http.Get(e.hubURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}
