package alsa

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/internal/backoff"
)

// Speaker is a device.Speaker playing through aplay.
type Speaker struct {
	pcm  string
	path string
	args []string
	env  []string
	log  *slog.Logger

	queue chan []byte // PCM bytes waiting for aplay
	free  chan []byte // recycled buffers

	dropped  atomic.Uint64
	restarts atomic.Uint64
	cur      atomic.Pointer[process] // the running aplay, for Close to hurry

	errMu   sync.Mutex
	pending error // failure to report from the next WriteFrame

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}
	closed    atomic.Bool
}

var _ device.Speaker = (*Speaker)(nil)

// OpenSpeaker starts `aplay -D pcm` and returns a Speaker feeding it. It fails if aplay
// is missing or exits at once (bad device name, card busy). ctx bounds only the
// opening; Close ends the speaker.
func OpenSpeaker(ctx context.Context, pcm string, opts Options) (*Speaker, error) {
	path, err := opts.lookCommand("aplay")
	if err != nil {
		return nil, err
	}
	buffer := opts.BufferTime
	if buffer <= 0 {
		buffer = DefaultPlaybackBuffer
	}
	start := opts.StartTime
	if start <= 0 || start > buffer {
		start = min(DefaultPlaybackStart, buffer)
	}
	queue := opts.QueueFrames
	if queue <= 0 {
		queue = DefaultQueueFrames
	}
	s := &Speaker{
		pcm:     pcm,
		path:    path,
		args:    append(baseArgs(pcm), "--buffer-time="+micros(buffer), "--start-delay="+micros(start)),
		env:     opts.Env,
		log:     opts.logger("playback", pcm),
		queue:   make(chan []byte, queue),
		free:    make(chan []byte, queue+1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	p, err := startProcess("aplay", s.path, s.args, s.env, true)
	if err != nil {
		return nil, err
	}
	if err := p.checkStart(ctx.Done()); err != nil {
		return nil, fmt.Errorf("alsa: open speaker %q: %w", pcm, err)
	}
	if err := ctx.Err(); err != nil {
		p.stop(0)
		return nil, err
	}
	s.log.Debug("aplay started", "pid", p.cmd.Process.Pid)
	s.cur.Store(p)
	go s.run(p)
	return s, nil
}

// WriteFrame queues pcm (any length; normally one frame) for playback without
// blocking. When the queue is full the frame is dropped and counted (see Dropped). If
// aplay failed since the last call, that error is returned once (aplay is being
// restarted; the frame is still queued).
func (s *Speaker) WriteFrame(pcm []int16) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var b []byte
	select {
	case b = <-s.free:
	default:
	}
	if cap(b) < 2*len(pcm) {
		b = make([]byte, 2*len(pcm))
	}
	b = b[:2*len(pcm)]
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	select {
	case s.queue <- b:
	default:
		s.dropped.Add(1)
		s.recycle(b)
	}
	s.errMu.Lock()
	err := s.pending
	s.pending = nil
	s.errMu.Unlock()
	return err
}

// Dropped returns how many frames were dropped because the queue was full.
func (s *Speaker) Dropped() uint64 { return s.dropped.Load() }

// Restarts returns how many times aplay was restarted after a failure.
func (s *Speaker) Restarts() uint64 { return s.restarts.Load() }

// closeGrace bounds how long Close lets aplay take the queued audio and how long it
// then waits for aplay to play it and exit, before killing it.
const closeGrace = 500 * time.Millisecond

// Close stops accepting frames, lets aplay play what it was given, and waits for it to
// exit (killing it if it takes more than about a second).
func (s *Speaker) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.closing)
		if p := s.cur.Load(); p != nil {
			// Cut short a write blocked on a stuck aplay.
			p.pipe.SetWriteDeadline(time.Now().Add(closeGrace))
		}
	})
	<-s.done
	return nil
}

func (s *Speaker) recycle(b []byte) {
	select {
	case s.free <- b:
	default:
	}
}

func (s *Speaker) fail(err error) {
	s.errMu.Lock()
	s.pending = err
	s.errMu.Unlock()
}

// run supervises aplay: it feeds it, and restarts it with back-off when it dies.
func (s *Speaker) run(p *process) {
	defer close(s.done)
	bo := newBackoff()
	for {
		err := s.feed(p)
		if err == nil { // closing
			return
		}
		if time.Since(p.started) > healthyAfter {
			bo.Reset()
		}
		s.fail(err)
		delay := bo.Next()
		s.log.Warn("aplay failed; restarting", "err", err, "backoff", delay)
		for {
			if backoff.Sleep(context.Background(), delay, s.closing) != nil {
				return
			}
			p, err = startProcess("aplay", s.path, s.args, s.env, true)
			if err == nil {
				break
			}
			s.fail(err)
			delay = bo.Next()
			s.log.Warn("aplay restart failed", "err", err, "backoff", delay)
		}
		s.cur.Store(p)
		s.restarts.Add(1)
		s.log.Info("aplay restarted", "pid", p.cmd.Process.Pid)
	}
}

// writeTimeout is how long a write to aplay may block before aplay is considered hung
// (a stuck or vanished card) and restarted. With a 60 ms buffer aplay normally takes
// a frame within 20 ms.
const writeTimeout = 2 * time.Second

// feed writes queued frames to p until it fails (returning why) or the speaker closes
// (returning nil after a graceful stop).
func (s *Speaker) feed(p *process) error {
	for {
		select {
		case <-s.closing:
			// Hand over what is still queued, then let aplay drain and exit.
			s.drain(p)
			p.stop(closeGrace)
			return nil
		case <-p.exited:
			p.pipe.Close()
			return fmt.Errorf("alsa: %w", p.exitReason())
		case b := <-s.queue:
			err := s.write(p, b)
			if err != nil && s.closed.Load() {
				p.stop(0)
				return nil
			}
			if err != nil {
				p.stop(100 * time.Millisecond)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("alsa: aplay hung: took no audio for %v", writeTimeout)
				}
				return fmt.Errorf("alsa: %w", p.exitReason())
			}
		}
	}
}

func (s *Speaker) write(p *process, b []byte) error {
	timeout := writeTimeout
	if s.closed.Load() {
		timeout = closeGrace
	}
	p.pipe.SetWriteDeadline(time.Now().Add(timeout))
	_, err := p.pipe.Write(b)
	s.recycle(b)
	return err
}

// drain writes what is left in the queue.
func (s *Speaker) drain(p *process) {
	for {
		select {
		case b := <-s.queue:
			if s.write(p, b) != nil {
				return
			}
		default:
			return
		}
	}
}
