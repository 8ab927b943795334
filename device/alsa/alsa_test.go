package alsa

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
)

// requireALSAUtils fails (does not skip) the test without aplay/arecord: `make test`
// installs them, and a skipped hardware path is an untested one.
func requireALSAUtils(t *testing.T) {
	t.Helper()
	for _, cmd := range []string{"aplay", "arecord"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s not found: run `make test-deps` (Debian package alsa-utils): %v", cmd, err)
		}
	}
}

// alsaHome writes an .asoundrc holding config into a new directory and returns the
// environment that makes aplay/arecord read it.
func alsaHome(t *testing.T, config string) (dir string, env []string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".asoundrc"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, []string{"HOME=" + dir, "XDG_CONFIG_HOME=" + filepath.Join(dir, ".config")}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func toBytes(pcm []int16) []byte {
	b := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

func fromBytes(b []byte) []int16 {
	pcm := make([]int16, len(b)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return pcm
}

func checkTone(t *testing.T, what string, pcm []int16, freq, amp float64) {
	t.Helper()
	f := audio.DominantFrequency(pcm, device.SampleRate)
	want := amp * 32767 / math.Sqrt2
	db := 20 * math.Log10(audio.RMS(pcm)/want)
	t.Logf("%s: %.2f Hz (want %.0f), level %+.3f dB", what, f, freq, db)
	if math.Abs(f-freq) > 5 {
		t.Errorf("%s: frequency %.2f Hz, want %.0f ± 5", what, f, freq)
	}
	if math.Abs(db) > 1 {
		t.Errorf("%s: level off by %.2f dB", what, db)
	}
}

// TestSpeakerPlaysThroughALSA plays a 1 kHz tone through aplay into alsa-lib's file
// plugin (over the null PCM), which records the stream byte for byte.
func TestSpeakerPlaysThroughALSA(t *testing.T) {
	requireALSAUtils(t)
	dir, env := alsaHome(t, "")
	out := filepath.Join(dir, "played.raw")
	os.WriteFile(filepath.Join(dir, ".asoundrc"), fmt.Appendf(nil, `
pcm.rec {
	type file
	slave.pcm null
	file %q
	format raw
}
`, out), 0o644)

	// A deep queue: this test checks the ALSA path byte for byte, and a loaded CI
	// machine can starve aplay for longer than the default queue covers (dropping is
	// tested in TestSpeakerNeverBlocks).
	spk, err := OpenSpeaker(context.Background(), "rec", Options{Env: env, Logger: testLogger(t), QueueFrames: 50})
	if err != nil {
		t.Fatal(err)
	}
	const amp = 0.5
	var sent []int16
	pacer := audio.NewPacer(device.FrameDuration)
	pcm := make([]int16, device.FrameSamples)
	phase := 0.0
	for i := 0; i < 50; i++ { // 1 s, in real time as the mixer would
		if err := pacer.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		phase = audio.Sine(pcm, device.SampleRate, 1000, amp, phase)
		sent = append(sent, pcm...)
		if err := spk.WriteFrame(pcm); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := spk.Close(); err != nil {
		t.Fatal(err)
	}
	if err := spk.WriteFrame(pcm); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	if n := spk.Dropped(); n != 0 {
		t.Errorf("%d frames dropped", n)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := fromBytes(raw)
	// aplay pads the last period with silence.
	if len(got) < len(sent) {
		t.Fatalf("file plugin recorded %d samples, sent %d", len(got), len(sent))
	}
	if !bytes.Equal(raw[:2*len(sent)], toBytes(sent)) {
		t.Error("recorded audio differs from the audio sent")
	}
	checkTone(t, "played", got[:len(sent)], 1000, amp)
}

// TestMicrophoneCapturesThroughALSA captures a 700 Hz tone that alsa-lib's file plugin
// feeds from its infile.
func TestMicrophoneCapturesThroughALSA(t *testing.T) {
	requireALSAUtils(t)
	dir, env := alsaHome(t, "")
	const amp = 0.3
	tone := make([]int16, 2*device.SampleRate)
	audio.Sine(tone, device.SampleRate, 700, amp, 0)
	in := filepath.Join(dir, "tone.raw")
	os.WriteFile(in, toBytes(tone), 0o644)
	os.WriteFile(filepath.Join(dir, ".asoundrc"), fmt.Appendf(nil, `
pcm.cap {
	type file
	slave.pcm null
	file "/dev/null"
	infile %q
	format raw
}
`, in), 0o644)

	mic, err := OpenMicrophone(context.Background(), "cap", Options{Env: env, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer mic.Close()
	var got []int16
	pcm := make([]int16, device.FrameSamples)
	for i := 0; i < 50; i++ {
		if err := mic.ReadFrame(context.Background(), pcm); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got = append(got, pcm...)
	}
	if !slicesEqual(got, tone[:len(got)]) {
		t.Error("captured audio differs from the infile")
	}
	checkTone(t, "captured", got, 700, amp)
	if err := mic.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mic.ReadFrame(context.Background(), pcm); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

func slicesEqual(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOpenErrors(t *testing.T) {
	requireALSAUtils(t)
	_, env := alsaHome(t, "")
	ctx := context.Background()
	// Open reports a bad device itself when aplay fails within its start-up check;
	// on a slow machine the failure may come later, from the first writes or reads.
	pcm := make([]int16, device.FrameSamples)
	spk, err := OpenSpeaker(ctx, "no_such_pcm", Options{Env: env})
	if err == nil {
		deadline := time.Now().Add(3 * time.Second)
		for err == nil && time.Now().Before(deadline) {
			err = spk.WriteFrame(pcm)
			time.Sleep(device.FrameDuration)
		}
		spk.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "Unknown PCM no_such_pcm") {
		t.Errorf("unknown playback PCM: %v", err)
	} else {
		t.Logf("unknown playback PCM: %v", err)
	}
	mic, err := OpenMicrophone(ctx, "no_such_pcm", Options{Env: env})
	if err == nil {
		err = mic.ReadFrame(ctx, pcm)
		mic.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "Unknown PCM no_such_pcm") {
		t.Errorf("unknown capture PCM: %v", err)
	}
	_, err = OpenSpeaker(ctx, "default", Options{Command: "/nonexistent/aplay"})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "install alsa-utils") {
		t.Errorf("missing aplay: %v", err)
	}
	_, err = OpenMicrophone(ctx, "default", Options{Command: "no-such-arecord"})
	if !errors.Is(err, ErrNotInstalled) {
		t.Errorf("missing arecord: %v", err)
	}
}

// script writes an executable shell script standing in for aplay or arecord.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSpeakerRestartsDeadAplay(t *testing.T) {
	checkNoLeak(t)
	// Takes two frames of audio, then dies.
	fake := script(t, `sleep 0.3; head -c 3840 >/dev/null; echo "boom: card vanished" >&2; exit 3`)
	spk, err := OpenSpeaker(context.Background(), "x", Options{Command: fake, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer spk.Close()
	pcm := make([]int16, device.FrameSamples)
	var surfaced error
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (surfaced == nil || spk.Restarts() == 0) {
		if err := spk.WriteFrame(pcm); err != nil && surfaced == nil {
			surfaced = err
		}
		time.Sleep(device.FrameDuration)
	}
	if surfaced == nil || !strings.Contains(surfaced.Error(), "boom: card vanished") || !strings.Contains(surfaced.Error(), "exit status 3") {
		t.Fatalf("surfaced error: %v", surfaced)
	}
	if spk.Restarts() == 0 {
		t.Fatal("aplay not restarted")
	}
	t.Logf("surfaced %q; %d restarts, %d frames dropped", surfaced, spk.Restarts(), spk.Dropped())
}

// checkNoLeak fails the test if goroutines started after it was called outlive the
// test (give or take a second to wind down).
func checkNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			t.Errorf("%d goroutines leaked", n-before)
		}
	})
}

func TestSpeakerNeverBlocks(t *testing.T) {
	checkNoLeak(t)
	// An aplay that takes nothing: writes must still return at once, dropping.
	fake := script(t, `exec sleep 30`)
	spk, err := OpenSpeaker(context.Background(), "x", Options{Command: fake, QueueFrames: 2})
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, device.FrameSamples)
	start := time.Now()
	for i := 0; i < 200; i++ { // 4 s of audio, far more than pipe and queue hold
		spk.WriteFrame(pcm)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("200 writes took %v", el)
	}
	if spk.Dropped() == 0 {
		t.Fatal("nothing dropped")
	}
	start = time.Now()
	spk.Close() // aplay ignores EOF: killed after the grace period
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Close took %v", el)
	}
}

func TestMicrophoneRestartsDeadArecord(t *testing.T) {
	// Two frames of a ramp, then death.
	ramp := make([]int16, 2*device.FrameSamples)
	for i := range ramp {
		ramp[i] = int16(i)
	}
	src := filepath.Join(t.TempDir(), "ramp.raw")
	os.WriteFile(src, toBytes(ramp), 0o644)
	// The first run outlives Open's start-up check; restarts die at once.
	marker := filepath.Join(t.TempDir(), "started")
	fake := script(t, fmt.Sprintf(`[ -e %[1]q ] || { touch %[1]q; sleep 0.3; }; cat %[2]q; echo "boom: overrun" >&2; exit 2`, marker, src))
	mic, err := OpenMicrophone(context.Background(), "x", Options{Command: fake, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer mic.Close()
	ctx := context.Background()
	pcm := make([]int16, device.FrameSamples)
	for round := 0; round < 2; round++ {
		for f := 0; f < 2; f++ {
			if err := mic.ReadFrame(ctx, pcm); err != nil {
				t.Fatalf("round %d frame %d: %v", round, f, err)
			}
			if pcm[0] != int16(f*device.FrameSamples) || pcm[device.FrameSamples-1] != int16((f+1)*device.FrameSamples-1) {
				t.Fatalf("round %d frame %d: %d…%d", round, f, pcm[0], pcm[device.FrameSamples-1])
			}
		}
		err := mic.ReadFrame(ctx, pcm)
		if err == nil || !strings.Contains(err.Error(), "boom: overrun") {
			t.Fatalf("round %d: death not surfaced: %v", round, err)
		}
	}
}

func TestMicrophoneContextAndClose(t *testing.T) {
	checkNoLeak(t)
	fake := script(t, `exec sleep 30`) // never produces audio
	mic, err := OpenMicrophone(context.Background(), "x", Options{Command: fake})
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, device.FrameSamples)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := mic.ReadFrame(ctx, pcm); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- mic.ReadFrame(context.Background(), pcm) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	mic.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending read after Close: %v", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("Close did not unblock ReadFrame")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Close took %v", el)
	}
}

func TestParseProcAsound(t *testing.T) {
	cards, err := parseCards(strings.NewReader(` 0 [PCH            ]: HDA-Intel - HDA Intel PCH
                      HDA Intel PCH at 0xf7f10000 irq 33
 1 [Device         ]: USB-Audio - USB PnP Sound Device
                      C-Media Electronics Inc. USB PnP Sound Device at usb-0000:00:14.0-2, full speed
`))
	if err != nil || len(cards) != 2 || cards[1].index != 1 || cards[1].id != "Device" || cards[1].name != "USB PnP Sound Device" {
		t.Fatalf("cards %+v, %v", cards, err)
	}
	if none, _ := parseCards(strings.NewReader("--- no soundcards ---\n")); len(none) != 0 {
		t.Fatalf("no soundcards: %+v", none)
	}
	devs, err := parsePCM(strings.NewReader(`00-00: ALC3246 Analog : ALC3246 Analog : playback 1 : capture 1
00-03: HDMI 0 : HDMI 0 : playback 1
01-00: USB Audio : USB Audio : capture 1
garbage line
`))
	if err != nil || len(devs) != 3 {
		t.Fatalf("devices %+v, %v", devs, err)
	}
	want := []Device{
		{Card: 0, Device: 0, Name: "ALC3246 Analog", Playback: true, Capture: true},
		{Card: 0, Device: 3, Name: "HDMI 0", Playback: true},
		{Card: 1, Device: 0, Name: "USB Audio", Capture: true},
	}
	for i := range want {
		if devs[i] != want[i] {
			t.Errorf("device %d: %+v, want %+v", i, devs[i], want[i])
		}
	}
	if got := (Device{Card: 1, CardID: "Device", Device: 0}).PCM(); got != "plughw:CARD=Device,DEV=0" {
		t.Errorf("PCM() = %q", got)
	}
	if got := (Device{Card: 2, Device: 1}).PCM(); got != "plughw:CARD=2,DEV=1" {
		t.Errorf("PCM() = %q", got)
	}
}

func TestListDevicesOnThisMachine(t *testing.T) {
	devs, err := ListDevices()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Available() = %v; %d PCMs: %+v", Available(), len(devs), devs)
	if Available() && len(devs) == 0 {
		t.Error("a sound card but no PCMs")
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff()
	prev := time.Duration(0)
	for i := 0; i < 10; i++ {
		d := b.Next()
		if d < 50*time.Millisecond || d > 5*time.Second {
			t.Fatalf("delay %d: %v", i, d)
		}
		if i == 9 && d < 2500*time.Millisecond {
			t.Fatalf("no growth: %v after %v", d, prev)
		}
		prev = d
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}
