// Package alsa plays and captures audio through ALSA without cgo: it runs alsa-utils'
// aplay and arecord as supervised subprocesses and streams raw S16_LE 48 kHz mono PCM
// through their stdin and stdout. Going through alsa-lib this way keeps the agent a
// static pure-Go binary while every ALSA device name works (hw:, plughw:, dmix, and
// plugins defined in ~/.asoundrc or /etc/asound.conf).
//
// A Speaker never blocks its caller: WriteFrame hands frames to a small bounded queue
// and drops (and counts) frames when it is full. If aplay or arecord dies it is
// restarted with exponential back-off and jitter; the failure is logged and returned
// once from the next WriteFrame or ReadFrame.
//
// Pipes to the subprocesses are shrunk to one page (Linux F_SETPIPE_SZ) so that they
// add at most ~40 ms of latency or stale audio.
//
// Requires the Debian package alsa-utils (aplay, arecord) at run time.
package alsa

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrNotInstalled is wrapped by errors about a missing aplay or arecord.
var ErrNotInstalled = errors.New("alsa: aplay/arecord not found (install alsa-utils)")

// ErrClosed is returned by reads and writes after Close.
var ErrClosed = errors.New("alsa: closed")

// Defaults of Options.
const (
	DefaultPlaybackBuffer = 60 * time.Millisecond
	DefaultPlaybackStart  = 20 * time.Millisecond
	DefaultCaptureBuffer  = 200 * time.Millisecond
	DefaultCapturePeriod  = 20 * time.Millisecond
	DefaultQueueFrames    = 3
)

// Options tune a Speaker or Microphone. The zero value is ready to use.
type Options struct {
	// Logger receives restart and failure reports (component=alsa). Nil discards.
	Logger *slog.Logger
	// Env is added to the subprocess's environment, e.g. HOME=/tmp/x to make alsa-lib
	// read /tmp/x/.asoundrc.
	Env []string
	// Command replaces the aplay or arecord executable (a name on PATH or a path).
	Command string
	// BufferTime is the ALSA buffer: DefaultPlaybackBuffer for a Speaker (it is the
	// playback latency), DefaultCaptureBuffer for a Microphone.
	BufferTime time.Duration
	// StartTime is how much audio aplay queues in the card before it starts playing
	// (DefaultPlaybackStart; aplay's --start-delay). The mixer then keeps about that
	// much queued, so it is the talk-back delay the card adds; the rest of BufferTime is
	// room for a late write. aplay's own default is the whole buffer.
	StartTime time.Duration
	// PeriodTime is the capture period (DefaultCapturePeriod): how often arecord
	// hands over audio. Playback uses aplay's default of a quarter buffer.
	PeriodTime time.Duration
	// QueueFrames bounds a Speaker's queue (DefaultQueueFrames).
	QueueFrames int
}

func (o Options) logger(dir, pcm string) *slog.Logger {
	l := o.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("component", "alsa", "dir", dir, "pcm", pcm)
}

// lookCommand resolves the executable, defaulting to def.
func (o Options) lookCommand(def string) (string, error) {
	name := o.Command
	if name == "" {
		name = def
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	return path, nil
}

// baseArgs are the stream format arguments shared by aplay and arecord.
func baseArgs(pcm string) []string {
	return []string{"-D", pcm, "-q", "-t", "raw", "-f", "S16_LE", "-r", "48000", "-c", "1"}
}

func micros(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }

// Available reports whether this machine has a sound card (/proc/asound/cards lists
// one) and aplay is on PATH.
func Available() bool {
	if _, err := exec.LookPath("aplay"); err != nil {
		return false
	}
	f, err := os.Open("/proc/asound/cards")
	if err != nil {
		return false
	}
	defer f.Close()
	cards, err := parseCards(f)
	return err == nil && len(cards) > 0
}

// Device is one ALSA PCM of a sound card.
type Device struct {
	Card     int    // card index
	CardID   string // card id, e.g. "PCH"
	CardName string // card description
	Device   int    // PCM device number on the card
	Name     string // PCM name, e.g. "ALC3246 Analog"
	Playback bool   // has a playback stream
	Capture  bool   // has a capture stream
}

// PCM returns the ALSA device name to open it with format and rate conversion, e.g.
// "plughw:CARD=PCH,DEV=0".
func (d Device) PCM() string {
	card := d.CardID
	if card == "" {
		card = strconv.Itoa(d.Card)
	}
	return fmt.Sprintf("plughw:CARD=%s,DEV=%d", card, d.Device)
}

// ListDevices lists the PCMs of the machine's sound cards from /proc/asound. A machine
// without sound cards yields none and no error.
func ListDevices() ([]Device, error) {
	cards := map[int]card{}
	if f, err := os.Open("/proc/asound/cards"); err == nil {
		list, err := parseCards(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("alsa: read /proc/asound/cards: %w", err)
		}
		for _, c := range list {
			cards[c.index] = c
		}
	}
	f, err := os.Open("/proc/asound/pcm")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alsa: list devices: %w", err)
	}
	defer f.Close()
	devs, err := parsePCM(f)
	if err != nil {
		return nil, fmt.Errorf("alsa: read /proc/asound/pcm: %w", err)
	}
	for i := range devs {
		if c, ok := cards[devs[i].Card]; ok {
			devs[i].CardID, devs[i].CardName = c.id, c.name
		}
	}
	return devs, nil
}

type card struct {
	index    int
	id, name string
}

// cardLine matches " 0 [PCH            ]: HDA-Intel - HDA Intel PCH".
var cardLine = regexp.MustCompile(`^\s*(\d+)\s+\[([^\]]*)\]:\s*(.*)$`)

func parseCards(r io.Reader) ([]card, error) {
	var cards []card
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := cardLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue // continuation lines, "--- no soundcards ---"
		}
		idx, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		name := m[3]
		if _, after, ok := strings.Cut(name, " - "); ok {
			name = after
		}
		cards = append(cards, card{index: idx, id: strings.TrimSpace(m[2]), name: strings.TrimSpace(name)})
	}
	return cards, sc.Err()
}

// parsePCM parses lines like
// "00-00: ALC3246 Analog : ALC3246 Analog : playback 1 : capture 1".
func parsePCM(r io.Reader) ([]Device, error) {
	var devs []Device
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 {
			continue
		}
		cardStr, devStr, ok := strings.Cut(strings.TrimSpace(fields[0]), "-")
		if !ok {
			continue
		}
		c, err1 := strconv.Atoi(cardStr)
		d, err2 := strconv.Atoi(devStr)
		if err1 != nil || err2 != nil {
			continue
		}
		dev := Device{Card: c, Device: d, Name: strings.TrimSpace(fields[1])}
		for _, f := range fields[3:] {
			f = strings.TrimSpace(f)
			dev.Playback = dev.Playback || strings.HasPrefix(f, "playback")
			dev.Capture = dev.Capture || strings.HasPrefix(f, "capture")
		}
		devs = append(devs, dev)
	}
	return devs, sc.Err()
}
