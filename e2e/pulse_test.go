package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startPulse runs a private PulseAudio server with one null sink (a sound card paced by the
// system clock) for the test's life, and returns its address for PULSE_SERVER.
//
// Firefox needs it to keep real time: without a sound card its audio graph runs on cubeb's mock
// context, whose clock falls behind the wall clock when the CPU is busy (measured: RTP
// timestamps of its talk advancing 0.68–0.90 s a second, so the device underruns a third of
// the time), and an oscillator in an AudioContext runs on that same clock. With this server its
// graph, fake microphone included, is paced by the null sink (1.00; docs/sdk.md).
func startPulse(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("pulseaudio")
	if err != nil {
		t.Fatal("pulseaudio is needed for Firefox's audio clock in the browser tests: run `make test-deps`")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "native")
	script := "load-module module-native-protocol-unix auth-anonymous=1 socket=" + sock + "\n" +
		"load-module module-null-sink sink_name=speaker\n" +
		"set-default-sink speaker\n" +
		"set-default-source speaker.monitor\n"
	pa := filepath.Join(dir, "default.pa")
	must(t, os.WriteFile(pa, []byte(script), 0o644), "write PulseAudio's script")
	ctx, cancel := context.WithCancel(context.Background())
	// -n: no default script; no D-Bus, no autospawn, no exit when idle; its state in dir.
	cmd := exec.CommandContext(ctx, bin, "-n", "-F", pa, "--daemonize=no", "--exit-idle-time=-1",
		"--disallow-exit", "--use-pid-file=no", "--log-target=file:"+filepath.Join(dir, "pulse.log"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "XDG_CONFIG_HOME="+dir)
	must(t, cmd.Start(), "start pulseaudio")
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return "unix:" + sock
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pulse.log"))
			t.Fatalf("pulseaudio exited (%v) before it listened:\n%s", waitErr, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("pulseaudio did not listen within 10 s")
		}
	}
}
