// Package rpicam reads a Raspberry Pi CSI camera through rpicam-vid (libcamera), which
// captures and encodes H.264 itself (the hardware encoder on Pi ≤ 4, software on Pi 5),
// as a device.VideoSource.
//
// # Contract
//
// Open starts `rpicam-vid -t 0 --codec h264 --inline --low-latency --flush -n -o -` with
// the size, rate, bit rate and intra period of Options, and splits its stdout into
// access units (encode.Splitter), passed through encode.ParamSets so that every IDR carries SPS
// and PPS. When rpicam-vid exits, ReadSample returns an error with the end of its stderr;
// wrap the camera with device/reopen to restart it with back-off. rpicam-vid cannot
// be asked for a keyframe while running: RequestKeyframe is noted once in the log, and
// viewers wait for the next periodic IDR (Options.Intra, two seconds by default).
// Close stops the process (SIGTERM, then SIGKILL after a second).
package rpicam

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/encode"
)

// Options configure Open; zero fields take defaults.
type Options struct {
	Width, Height, FPS int // default 1280x720 at 30
	Bitrate            int // bit/s; 0 lets rpicam-vid choose
	// Intra is the IDR period in frames (default 2·FPS: one every two seconds).
	Intra int
	// Command is the executable (default rpicam-vid, else libcamera-vid on older Pi OS).
	Command string
	// Args are appended to the command line (e.g. --rotation 180, --camera 1).
	Args []string
	// Logger (component=rpicam); nil discards.
	Logger *slog.Logger
}

// ErrClosed is returned by ReadSample after Close.
var ErrClosed = errors.New("rpicam: camera closed")

// Camera is rpicam-vid as a device.VideoSource.
type Camera struct {
	cmd    *exec.Cmd
	log    *slog.Logger
	period time.Duration
	units  chan []byte
	done   chan struct{} // closed when the reader has ended
	err    error         // why the reader ended; read after done
	stderr *encode.StderrTail
	warn   sync.Once

	closeOnce sync.Once
	closed    chan struct{}
}

var _ device.VideoSource = (*Camera)(nil)

// args returns the rpicam-vid arguments for o (without the command name).
func (o Options) args() []string {
	a := []string{"-t", "0", "--codec", "h264", "--inline", "--low-latency", "--flush", "-n",
		"--profile", "baseline",
		"--width", strconv.Itoa(o.Width), "--height", strconv.Itoa(o.Height),
		"--framerate", strconv.Itoa(o.FPS), "--intra", strconv.Itoa(o.Intra)}
	if o.Bitrate > 0 {
		a = append(a, "--bitrate", strconv.Itoa(o.Bitrate))
	}
	return append(append(a, o.Args...), "-o", "-")
}

// Open starts rpicam-vid.
func Open(o Options) (*Camera, error) {
	if o.Width <= 0 || o.Height <= 0 {
		o.Width, o.Height = 1280, 720
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.Intra <= 0 {
		o.Intra = 2 * o.FPS
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	name := o.Command
	if name == "" {
		name = "rpicam-vid"
		if _, err := exec.LookPath(name); err != nil {
			if _, err2 := exec.LookPath("libcamera-vid"); err2 == nil {
				name = "libcamera-vid"
			}
		}
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("rpicam: %s not found (install rpicam-apps): %w", name, err)
	}
	c := &Camera{log: o.Logger.With("component", "rpicam"), period: time.Second / time.Duration(o.FPS),
		units: make(chan []byte, 2), done: make(chan struct{}), closed: make(chan struct{}), stderr: &encode.StderrTail{}}
	c.cmd = exec.Command(path, o.args()...)
	c.cmd.Stderr = c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("rpicam: %w", err)
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("rpicam: start %s: %w", path, err)
	}
	c.log.Info("rpicam-vid started", "pid", c.cmd.Process.Pid, "size", fmt.Sprintf("%dx%d", o.Width, o.Height), "fps", o.FPS)
	go c.read(out)
	return c, nil
}

// read splits stdout into access units until the process ends.
func (c *Camera) read(r io.Reader) {
	defer close(c.done)
	var (
		sp encode.Splitter
		ps encode.ParamSets
	)
	buf := make([]byte, 256<<10)
	for {
		n, err := r.Read(buf)
		aus := sp.Write(buf[:n])
		if err != nil {
			if last := sp.Flush(); last != nil {
				aus = append(aus, last)
			}
		}
		for _, au := range aus {
			au, _, ok := ps.Filter(au)
			if !ok {
				continue
			}
			select {
			case c.units <- au:
			default:
				// The reader is behind: drop the oldest unit so the newest gets through.
				select {
				case <-c.units:
				default:
				}
				c.units <- au
			}
		}
		if err != nil {
			werr := c.cmd.Wait()
			msg := c.stderr.String()
			switch {
			case werr != nil:
				c.err = fmt.Errorf("rpicam: rpicam-vid ended: %v: %s", werr, msg)
			default:
				c.err = fmt.Errorf("rpicam: rpicam-vid ended its stream: %s", msg)
			}
			return
		}
	}
}

// MimeType is "video/H264".
func (c *Camera) MimeType() string { return "video/H264" }

// RequestKeyframe cannot reach rpicam-vid: see the package comment.
func (c *Camera) RequestKeyframe() {
	c.warn.Do(func() {
		c.log.Info("rpicam-vid cannot make a keyframe on request; viewers get the next periodic one")
	})
}

// ReadSample returns the next access unit.
func (c *Camera) ReadSample(ctx context.Context) (device.Sample, error) {
	select {
	case <-c.closed:
		return device.Sample{}, ErrClosed
	default:
	}
	select {
	case au := <-c.units:
		return c.sample(au), nil
	default:
	}
	select {
	case au := <-c.units:
		return c.sample(au), nil
	case <-c.done:
		select {
		case au := <-c.units:
			return c.sample(au), nil
		default:
		}
		select {
		case <-c.closed:
			return device.Sample{}, ErrClosed
		default:
		}
		return device.Sample{}, c.err
	case <-c.closed:
		return device.Sample{}, ErrClosed
	case <-ctx.Done():
		return device.Sample{}, ctx.Err()
	}
}

func (c *Camera) sample(au []byte) device.Sample {
	return device.Sample{Data: au, Duration: c.period, Keyframe: isIDR(au), CaptureTime: time.Now()}
}

func isIDR(au []byte) bool {
	for i := 0; i+4 < len(au); i++ {
		if au[i] == 0 && au[i+1] == 0 && au[i+2] == 1 && au[i+3]&0x1f == 5 {
			return true
		}
	}
	return false
}

// Close stops rpicam-vid and waits for it.
func (c *Camera) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return nil
}
