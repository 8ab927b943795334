package encode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/camagent/camagent/device/h264"
)

// FFmpegOptions configure an FFmpeg encoder; zero fields take defaults.
type FFmpegOptions struct {
	Width, Height, FPS int
	// Bitrate in bit/s (default about 0.1 bit per pixel per frame, at least 300 kbit/s).
	Bitrate int
	// GOP is the time between periodic IDRs (default 2 s).
	GOP time.Duration
	// Command is the ffmpeg executable (default "ffmpeg" on PATH).
	Command string
	// Logger (component=ffmpeg); nil discards.
	Logger *slog.Logger
}

// FFmpeg encodes with libx264 in an ffmpeg subprocess (ultrafast, zerolatency,
// constrained baseline, SPS/PPS before every IDR): raw I420 pictures go to its stdin and
// Annex-B H.264 comes back on its stdout. An access unit is complete when the next one
// begins, so Encode returns the previous picture's unit (one frame of latency, nil for
// the first picture). x264 cannot be asked for an IDR through a pipe: a forced IDR
// restarts the process, whose first picture is one. When ffmpeg dies, Encode returns the
// error with the end of its stderr, and the next Encode starts a new process.
type FFmpeg struct {
	o    FFmpegOptions
	path string
	log  *slog.Logger
	raw  []byte

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	units  chan []byte
	done   chan struct{}
	err    error
	stderr *StderrTail
	frames int // pictures written to the current process
}

var _ Encoder = (*FFmpeg)(nil)

// ErrNoLibx264 is wrapped when ffmpeg is missing or has no libx264.
var ErrNoLibx264 = errors.New("encode: ffmpeg with libx264 not found")

var (
	probeMu    sync.Mutex
	probeCache = map[string]error{}
)

// FFmpegAvailable reports whether command (default "ffmpeg") exists and has libx264;
// the answer is cached.
func FFmpegAvailable(command string) error {
	if command == "" {
		command = "ffmpeg"
	}
	probeMu.Lock()
	defer probeMu.Unlock()
	if err, ok := probeCache[command]; ok {
		return err
	}
	err := func() error {
		path, err := exec.LookPath(command)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNoLibx264, err)
		}
		out, err := exec.Command(path, "-hide_banner", "-h", "encoder=libx264").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("libx264")) || bytes.Contains(out, []byte("is not recognized")) {
			return fmt.Errorf("%w: %s has no libx264 encoder", ErrNoLibx264, path)
		}
		return nil
	}()
	probeCache[command] = err
	return err
}

// NewFFmpeg starts ffmpeg for width×height pictures.
func NewFFmpeg(o FFmpegOptions) (*FFmpeg, error) {
	if o.Width <= 0 || o.Height <= 0 || o.Width%2 != 0 || o.Height%2 != 0 {
		return nil, fmt.Errorf("encode: ffmpeg: picture size %dx%d must be positive and even", o.Width, o.Height)
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.GOP <= 0 {
		o.GOP = 2 * time.Second
	}
	if o.Bitrate <= 0 {
		o.Bitrate = max(300_000, o.Width*o.Height*o.FPS/10)
	}
	if o.Command == "" {
		o.Command = "ffmpeg"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := FFmpegAvailable(o.Command); err != nil {
		return nil, err
	}
	path, _ := exec.LookPath(o.Command)
	e := &FFmpeg{o: o, path: path, log: o.Logger.With("component", "ffmpeg"), raw: make([]byte, o.Width*o.Height*3/2)}
	if err := e.start(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *FFmpeg) args() []string {
	o := e.o
	gop := max(1, int(o.GOP.Seconds()*float64(o.FPS)+0.5))
	br := strconv.Itoa(o.Bitrate)
	return []string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", fmt.Sprintf("%dx%d", o.Width, o.Height),
		"-framerate", strconv.Itoa(o.FPS), "-i", "pipe:0",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-pix_fmt", "yuv420p", "-g", strconv.Itoa(gop), "-bf", "0",
		"-b:v", br, "-maxrate", br, "-bufsize", strconv.Itoa(o.Bitrate / 2),
		"-x264-params", "repeat-headers=1:aud=1",
		"-flush_packets", "1", "-f", "h264", "pipe:1"}
}

func (e *FFmpeg) start() error {
	cmd := exec.Command(e.path, e.args()...)
	e.stderr = &StderrTail{}
	cmd.Stderr = e.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("encode: ffmpeg: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("encode: ffmpeg: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("encode: start ffmpeg: %w", err)
	}
	e.cmd, e.stdin, e.frames = cmd, stdin, 0
	e.units, e.done, e.err = make(chan []byte, 64), make(chan struct{}), nil
	go e.read(stdout, e.units, e.done)
	e.log.Debug("ffmpeg started", "pid", cmd.Process.Pid)
	return nil
}

// read splits ffmpeg's output into access units until it ends.
func (e *FFmpeg) read(r io.Reader, units chan<- []byte, done chan<- struct{}) {
	defer close(done)
	var sp Splitter
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		for _, au := range sp.Write(buf[:n]) {
			select {
			case units <- au:
			default: // nobody is reading: drop rather than block ffmpeg
			}
		}
		if err != nil {
			return
		}
	}
}

// stop ends the current process and returns why it ended, if it had failed.
func (e *FFmpeg) stop() error {
	if e.cmd == nil {
		return nil
	}
	e.stdin.Close()
	select {
	case <-e.done:
	case <-time.After(2 * time.Second):
		e.cmd.Process.Kill()
		<-e.done
	}
	err := e.cmd.Wait()
	e.cmd = nil
	return err
}

// Encode writes one picture and returns the access unit that completed, if any.
func (e *FFmpeg) Encode(f *h264.Frame, forceIDR bool, capture time.Time) ([]byte, error) {
	if f.Width != e.o.Width || f.Height != e.o.Height {
		return nil, fmt.Errorf("encode: ffmpeg: picture %dx%d, encoder set for %dx%d", f.Width, f.Height, e.o.Width, e.o.Height)
	}
	if e.cmd == nil || forceIDR && e.frames > 0 {
		if e.cmd != nil {
			e.stop()
		}
		if err := e.start(); err != nil {
			return nil, err
		}
	}
	w, h := f.Width, f.Height
	copy(e.raw, f.Y[:w*h])
	copy(e.raw[w*h:], f.Cb[:w*h/4])
	copy(e.raw[w*h*5/4:], f.Cr[:w*h/4])
	if _, err := e.stdin.Write(e.raw); err != nil {
		msg := e.stderr.String()
		werr := e.stop()
		return nil, fmt.Errorf("encode: ffmpeg died: %v %v: %s", err, werr, msg)
	}
	e.frames++
	// Give ffmpeg a moment to finish the previous picture's unit, whose end the new
	// picture's first bytes mark.
	if e.frames > 1 {
		select {
		case au := <-e.units:
			return au, nil
		case <-e.done:
			msg := e.stderr.String()
			werr := e.stop()
			return nil, fmt.Errorf("encode: ffmpeg ended: %v: %s", werr, msg)
		case <-time.After(time.Second):
			return nil, nil
		}
	}
	return nil, nil
}

// Name is "software (ffmpeg libx264)".
func (e *FFmpeg) Name() string { return "software (ffmpeg libx264)" }

// Close stops ffmpeg.
func (e *FFmpeg) Close() error {
	e.stop()
	return nil
}

// StderrTail keeps the last 1 KiB written to it: the end of a supervised process's stderr,
// for the error that reports its exit.
type StderrTail struct {
	mu sync.Mutex
	b  []byte
}

func (t *StderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 1024 {
		t.b = t.b[len(t.b)-1024:]
	}
	return len(p), nil
}

func (t *StderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
