package alsa

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/internal/backoff"
)

// Microphone is a device.Microphone capturing through arecord.
type Microphone struct {
	pcm  string
	path string
	args []string
	env  []string
	log  *slog.Logger

	mu     sync.Mutex // serialises ReadFrame and the process's shutdown
	proc   *process   // nil while arecord is down
	buf    []byte     // one frame of S16_LE
	fill   int        // bytes of buf already read
	bo     *backoff.Backoff
	failed bool // the last process failed: back off before the next start

	closeCtx context.Context
	close    context.CancelFunc
}

var _ device.Microphone = (*Microphone)(nil)

// OpenMicrophone starts `arecord -D pcm` and returns a Microphone reading from it. It
// fails if arecord is missing or exits at once (bad device name, card busy). ctx bounds
// only the opening; Close ends the microphone.
func OpenMicrophone(ctx context.Context, pcm string, opts Options) (*Microphone, error) {
	path, err := opts.lookCommand("arecord")
	if err != nil {
		return nil, err
	}
	buffer, period := opts.BufferTime, opts.PeriodTime
	if buffer <= 0 {
		buffer = DefaultCaptureBuffer
	}
	if period <= 0 {
		period = DefaultCapturePeriod
	}
	m := &Microphone{
		pcm:  pcm,
		path: path,
		args: append(baseArgs(pcm), "--buffer-time="+micros(buffer), "--period-time="+micros(period)),
		env:  opts.Env,
		log:  opts.logger("capture", pcm),
		buf:  make([]byte, 2*device.FrameSamples),
		bo:   newBackoff(),
	}
	m.closeCtx, m.close = context.WithCancel(context.Background())
	p, err := startProcess("arecord", m.path, m.args, m.env, false)
	if err != nil {
		return nil, err
	}
	if err := p.checkStart(ctx.Done()); err != nil {
		return nil, fmt.Errorf("alsa: open microphone %q: %w", pcm, err)
	}
	if err := ctx.Err(); err != nil {
		p.stop(0)
		return nil, err
	}
	m.log.Debug("arecord started", "pid", p.cmd.Process.Pid)
	m.proc = p
	return m, nil
}

// ReadFrame fills pcm with the next device.FrameSamples samples. It returns ctx.Err()
// if ctx ends first (a partly read frame is kept for the next call) and ErrClosed after
// Close. If arecord dies, ReadFrame returns that error; the next call restarts arecord
// after a back-off delay.
func (m *Microphone) ReadFrame(ctx context.Context, pcm []int16) error {
	if len(pcm) < device.FrameSamples {
		return fmt.Errorf("alsa: microphone: frame buffer holds %d samples, need %d", len(pcm), device.FrameSamples)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closeCtx.Err() != nil {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.proc == nil {
		if err := m.restart(ctx); err != nil {
			return err
		}
	}
	p := m.proc
	// Interrupt the blocking read when ctx ends or the microphone closes, by moving the
	// pipe's read deadline into the past; undo that once the interruption has happened.
	rctx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(m.closeCtx, cancel)
	interrupted := make(chan struct{})
	stopInterrupt := context.AfterFunc(rctx, func() {
		p.pipe.SetReadDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	var err error
	for m.fill < len(m.buf) && err == nil {
		var n int
		n, err = p.pipe.Read(m.buf[m.fill:])
		m.fill += n
	}
	if !stopInterrupt() {
		<-interrupted
		p.pipe.SetReadDeadline(time.Time{})
	}
	stopClose()
	cancel()
	switch {
	case err == nil:
	case m.closeCtx.Err() != nil:
		return ErrClosed
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return ctx.Err()
	default:
		return m.died(err)
	}
	m.fill = 0
	for i := range pcm[:device.FrameSamples] {
		pcm[i] = int16(binary.LittleEndian.Uint16(m.buf[2*i:]))
	}
	if time.Since(p.started) > healthyAfter {
		m.bo.Reset()
	}
	return nil
}

// died handles a failed read: arecord exited or its pipe broke.
func (m *Microphone) died(readErr error) error {
	p := m.proc
	m.proc, m.fill, m.failed = nil, 0, true
	p.stop(100 * time.Millisecond)
	err := fmt.Errorf("alsa: %w", p.exitReason())
	if p.exitErr == nil { // arecord ended cleanly; say what the read saw
		err = fmt.Errorf("alsa: arecord: read: %w", readErr)
	}
	m.log.Warn("arecord failed; restarting on next read", "err", err)
	return err
}

// restart starts arecord again, after a back-off delay if the last one failed.
func (m *Microphone) restart(ctx context.Context) error {
	if m.failed {
		if _, err := m.bo.Wait(ctx, m.closeCtx.Done()); errors.Is(err, backoff.ErrStopped) {
			return ErrClosed
		} else if err != nil {
			return err
		}
	}
	p, err := startProcess("arecord", m.path, m.args, m.env, false)
	if err != nil {
		m.failed = true
		return err
	}
	m.proc, m.failed = p, false
	m.log.Info("arecord restarted", "pid", p.cmd.Process.Pid)
	return nil
}

// Close stops arecord. A pending ReadFrame returns ErrClosed.
func (m *Microphone) Close() error {
	m.close()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		m.proc.stop(500 * time.Millisecond)
		m.proc = nil
	}
	return nil
}
