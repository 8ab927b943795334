package audio

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/camagent/camagent/device"
)

// DefaultMixerDepth is the default jitter queue of each mixer source, in frames.
const DefaultMixerDepth = 3

// The jitter buffer's adaptation: mixes per window, and calm windows before the target
// shrinks a frame.
const (
	windowMixes = 50
	calmWindows = 5
)

// Mixer mixes the PCM streams of several remote users (sources, keyed by an id such as
// the user's uid) into one speaker stream.
//
// Each source has a small bounded jitter queue: Push appends, and when the queue is
// full the oldest samples are dropped (so a source whose clock runs fast, or that
// arrives in a burst, costs a click instead of growing latency). Mix pulls one frame
// from every source, sums them, and saturates to int16; a source with nothing queued
// contributes silence, so Mix always produces a frame. Run does that every 20 ms into
// a device.Speaker.
//
// The queue is an adaptive jitter buffer: after an underrun the late frame and its
// successor are both queued, leaving one frame of slack, up to the depth. Every window
// (1 s of mixes) the least a source had queued after a mix is its standing queue,
// delay that no jitter needed; what exceeds the source's target is dropped. The target
// starts at zero, grows a frame after a window with an underrun (up to depth-1
// frames) and shrinks a frame after calmWindows windows without one; a window with a single
// underrun (one late packet, concealed) does not grow it. Run also moves its
// ticks to meet the sources' arrivals (phase.go).
//
// A source added by ConcealedInput has a concealer: when its queue is empty at a mix,
// the concealer fills the frame (a decoder's packet loss concealment) instead of
// silence, for at most maxConcealFrames frames in a row.
//
// A Mixer is safe for concurrent use.
type Mixer struct {
	depth int // samples per source queue
	log   *slog.Logger

	mu      sync.Mutex
	sources map[string]*ring
	stats   MixerStats
	scratch [device.FrameSamples]int16 // a concealed frame

	phaseMixes   int           // mixes in this phase window (phase.go)
	advance      time.Duration // pending move of the ticks, earlier
	advanceSince time.Time
}

// maxConcealFrames bounds the frames a source is concealed in a row: a sender that
// stopped (Chromium sends nothing while muted) falls silent after 60 ms.
const maxConcealFrames = 3

// Concealer fills pcm (one frame or less) with a concealment of a source's next
// samples, which did not arrive in time, and reports whether it did.
type Concealer func(pcm []int16) bool

// MixerStats counts what a Mixer dropped and missed.
type MixerStats struct {
	// Sources is the number of sources now present.
	Sources int
	// Frames is the number of frames mixed.
	Frames uint64
	// DroppedSamples counts samples dropped because a source's queue was full or stood
	// above its jitter buffer's target.
	DroppedSamples uint64
	// Underruns counts, per mixed frame and source, frames a present source could not
	// fill completely.
	Underruns uint64
	// Concealed counts the underruns a source's concealer filled.
	Concealed uint64
	// Advances counts the times Run moved its ticks earlier to meet the sources' frames
	// (phase alignment), and Advanced sums how far; each cut as much audio.
	Advances uint64
	Advanced time.Duration
}

// MixerOption configures a Mixer.
type MixerOption func(*Mixer)

// MixerDepth sets each source's queue bound in frames (default DefaultMixerDepth).
func MixerDepth(frames int) MixerOption {
	return func(m *Mixer) {
		if frames > 0 {
			m.depth = frames * device.FrameSamples
		}
	}
}

// MixerLogger sets the logger Run reports speaker errors to.
func MixerLogger(l *slog.Logger) MixerOption {
	return func(m *Mixer) {
		if l != nil {
			m.log = l
		}
	}
}

// NewMixer returns an empty Mixer.
func NewMixer(opts ...MixerOption) *Mixer {
	m := &Mixer{
		depth:   DefaultMixerDepth * device.FrameSamples,
		log:     slog.New(slog.DiscardHandler),
		sources: make(map[string]*ring),
	}
	for _, o := range opts {
		o(m)
	}
	m.log = m.log.With("component", "mixer")
	return m
}

// Push queues pcm (any length; normally one frame) for source key, adding the source
// if it is new. pcm is copied. If the queue overflows, the oldest samples are dropped.
func (m *Mixer) Push(key string, pcm []int16) { m.push(key, pcm, nil) }

func (m *Mixer) push(key string, pcm []int16, conceal Concealer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.sources[key]
	if !ok {
		r = newRing(m.depth)
		m.sources[key] = r
	}
	if conceal != nil {
		r.conceal = conceal
	}
	m.stats.DroppedSamples += uint64(r.write(pcm))
	r.stampWrite(time.Now(), len(pcm))
	if len(pcm) > 0 {
		r.heard, r.concealed = true, 0
	}
}

// Remove deletes source key and whatever it had queued. Removing an absent key is a
// no-op.
func (m *Mixer) Remove(key string) {
	m.mu.Lock()
	delete(m.sources, key)
	m.mu.Unlock()
}

// Keys returns the keys of the present sources, in no particular order.
func (m *Mixer) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.sources))
	for k := range m.sources {
		keys = append(keys, k)
	}
	return keys
}

// Queued returns how many samples source key has queued (0 if absent).
func (m *Mixer) Queued(key string) int {
	n, _ := m.queue(key)
	return n
}

// Target returns how many samples source key's jitter buffer may keep standing (0 if
// absent).
func (m *Mixer) Target(key string) int {
	_, t := m.queue(key)
	return t
}

func (m *Mixer) queue(key string) (queued, target int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.sources[key]; ok {
		return r.n, r.target
	}
	return 0, 0
}

// Stats returns a snapshot of the mixer's counters.
func (m *Mixer) Stats() MixerStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Sources = len(m.sources)
	return s
}

// Mix fills out with the next len(out) samples of the mix and returns how many sources
// contributed to it. With no source data, out is silence.
func (m *Mixer) Mix(out []int16) int {
	var acc [device.FrameSamples]int32
	clear(out)
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Frames++
	for _, r := range m.sources {
		r.slack = r.slackBefore(now, len(out))
	}
	active := 0
	// Mix in chunks of one frame so the accumulator lives on the stack.
	for off := 0; off < len(out); off += len(acc) {
		chunk := out[off:min(off+len(acc), len(out))]
		sum := acc[:len(chunk)]
		clear(sum)
		contributed := 0
		for _, r := range m.sources {
			n := r.addTo(sum)
			if n < len(chunk) {
				m.stats.Underruns++
				r.underran++
				if n == 0 && m.concealInto(r, sum) {
					n = len(chunk)
				}
			}
			if n > 0 {
				contributed++
			}
		}
		active = max(active, contributed)
		for i, v := range sum {
			switch {
			case v > math.MaxInt16:
				chunk[i] = math.MaxInt16
			case v < math.MinInt16:
				chunk[i] = math.MinInt16
			default:
				chunk[i] = int16(v)
			}
		}
	}
	for _, r := range m.sources {
		r.notePhase()
		m.stats.DroppedSamples += uint64(r.adapt())
	}
	m.endPhaseWindow(now)
	return active
}

// concealInto adds a concealment of r's next len(sum) samples into sum, if r has a
// concealer, has been heard, and has not been concealed for maxConcealFrames already.
func (m *Mixer) concealInto(r *ring, sum []int32) bool {
	if r.conceal == nil || !r.heard || r.concealed >= maxConcealFrames {
		return false
	}
	pcm := m.scratch[:len(sum)]
	if !r.conceal(pcm) {
		return false
	}
	r.concealed++
	m.stats.Concealed++
	for i, v := range pcm {
		sum[i] += int32(v)
	}
	return true
}

// Run mixes a frame every 20 ms (drift-free) and writes it to spk until ctx ends, when
// it returns nil. Speaker errors are logged (the first, then every 100th) and do not
// stop the loop: a speaker such as ALSA restarts itself.
func (m *Mixer) Run(ctx context.Context, spk device.Speaker) error {
	pacer := NewPacer(device.FrameDuration)
	frame := make([]int16, device.FrameSamples)
	var failures uint64
	for {
		// After a stall, do not mix the missed frames in a burst: they would sit in the
		// speaker's buffers as delay for the rest of the call.
		if time.Since(pacer.Due()) > device.FrameDuration {
			pacer.Reset()
		}
		if err := pacer.Wait(ctx); err != nil {
			return nil // cancellation is how Run ends, not a failure
		}
		m.Mix(frame)
		out := frame
		if adv := m.takeAdvance(frame, time.Now()); adv > 0 {
			// The next tick comes adv earlier: write adv less now, so the speaker's buffer
			// holds what it held (phase.go).
			out = frame[min(int(adv*device.SampleRate/time.Second), len(frame)):]
			pacer.Advance(adv)
		}
		if err := spk.WriteFrame(out); err != nil {
			if failures%100 == 0 {
				m.log.Warn("speaker write failed", "err", err, "failures", failures+1)
			}
			failures++
		}
	}
}

// Input returns a device.Speaker that pushes every frame written to it into the mixer
// as source key; closing it removes the source. It lets a decoder write to "a speaker"
// without knowing about the mix.
func (m *Mixer) Input(key string) device.Speaker {
	return &input{m: m, key: key}
}

// ConcealedInput is Input for a source whose gaps conceal fills (see Mixer). conceal is
// called from Mix, with the mixer locked: it must be quick and must not call the mixer.
func (m *Mixer) ConcealedInput(key string, conceal Concealer) device.Speaker {
	return &input{m: m, key: key, conceal: conceal}
}

type input struct {
	m       *Mixer
	key     string
	conceal Concealer

	mu     sync.Mutex
	closed bool
}

func (in *input) WriteFrame(pcm []int16) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return ErrClosed
	}
	in.m.push(in.key, pcm, in.conceal)
	return nil
}

func (in *input) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.closed {
		in.closed = true
		in.m.Remove(in.key)
	}
	return nil
}

// ring is a bounded FIFO of samples that drops the oldest on overflow.
type ring struct {
	buf  []int16
	head int // index of the oldest sample
	n    int // samples queued

	written, consumed int64         // samples ever written, and ever mixed or dropped
	stamps            []stamp       // push times of the queued samples, oldest first
	slack             time.Duration // phase slack before this mix (phase.go)
	phase             time.Duration // least phase slack in this window
	wholeWindow       bool          // present since the phase window began

	target   int // samples the queue may keep standing
	low      int // least queued after a mix in this window
	mixes    int // mixes in this window
	underran int // mixes in this window that found too little
	calm     int // windows in a row without an underrun

	conceal   Concealer // nil: gaps are silence
	heard     bool      // samples have been pushed
	concealed int       // frames concealed since the last push
}

func newRing(capacity int) *ring {
	return &ring{buf: make([]int16, capacity), low: capacity, phase: time.Duration(1 << 62)}
}

// adapt ends a mix: it tracks the standing queue and, at the end of a window, moves the
// target and drops the standing queue above it, returning how many samples it dropped.
func (r *ring) adapt() int {
	r.low = min(r.low, r.n)
	r.mixes++
	if r.mixes < windowMixes {
		return 0
	}
	frame := min(device.FrameSamples, len(r.buf))
	switch {
	case r.underran == 1:
		// One late packet in a second: concealed (an Opus source), and the frame it
		// leaves standing goes below; a frame of delay for the next 5 s would cost more.
		r.calm = 0
	case r.underran > 1:
		r.target = min(r.target+frame, len(r.buf)-frame)
		r.calm = 0
	case r.calm+1 >= calmWindows:
		r.target = max(r.target-frame, 0)
		r.calm = 0
	default:
		r.calm++
	}
	drop := max(r.low-r.target, 0)
	r.head = (r.head + drop) % len(r.buf)
	r.n -= drop
	r.took(drop)
	r.low, r.mixes, r.underran = len(r.buf), 0, 0
	return drop
}

// write appends pcm and returns how many samples were dropped to make room.
func (r *ring) write(pcm []int16) int {
	c := len(r.buf)
	dropped := 0
	if len(pcm) >= c { // only the newest c samples survive
		dropped = r.n + len(pcm) - c
		copy(r.buf, pcm[len(pcm)-c:])
		r.head, r.n = 0, c
		r.took(dropped)
		return dropped
	}
	if over := r.n + len(pcm) - c; over > 0 {
		r.head = (r.head + over) % c
		r.n -= over
		dropped = over
		r.took(over)
	}
	tail := (r.head + r.n) % c
	k := copy(r.buf[tail:], pcm)
	copy(r.buf, pcm[k:])
	r.n += len(pcm)
	return dropped
}

// addTo adds up to len(sum) queued samples into sum, consuming them, and returns how
// many it added.
func (r *ring) addTo(sum []int32) int {
	n := min(len(sum), r.n)
	c := len(r.buf)
	for i := 0; i < n; i++ {
		sum[i] += int32(r.buf[(r.head+i)%c])
	}
	r.head = (r.head + n) % c
	r.n -= n
	r.took(n)
	return n
}
