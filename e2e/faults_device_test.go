package e2e

// Device faults of the matrix (docs/reliability.md): the camera and the speaker go away
// mid-call and come back while the call goes on. The agent meets them as on a Pi, through
// its real device code: the camera is rpicam-vid (device/rpicam, reopened by device/reopen),
// the speaker an ALSA PCM played by aplay through alsa-lib (device/alsa). What the test takes
// away is the hardware behind them, which this machine does not have (faultrig_device_test.go).

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
)

const (
	// How long a device stays away: the camera 2 s; the speaker 5 s, long enough for the
	// restarted aplay, blocked opening the card, to be found hung (device/alsa: 2 s without
	// taking audio) and restarted again.
	cameraGone  = 2 * time.Second
	speakerGone = 5 * time.Second
	viewerTone  = 1000.0 // what the viewer says to the device, Hz
	// speakerHealthy is how long aplay must have played before its next death counts from
	// the first back-off step again (device/alsa's healthyAfter, 10 s, and a margin).
	speakerHealthy = 10500 * time.Millisecond
)

// startDeviceFaultCall is a call whose agent has the rig's devices (set by devices) and
// whose viewer listens and talks; it returns once the viewer's voice reaches the speaker.
func startDeviceFaultCall(t *testing.T, hw *deviceRig, devices func(*agentProc)) *faultCall {
	t.Helper()
	b := startRigBroker(t, "127.0.0.1:0")
	t.Cleanup(func() { b.stop(t) })
	fc := &faultCall{broker: b.url(), dev: "e2e-faults", viewerTone: viewerTone, agentOpts: func(a *agentProc) {
		a.env = append(a.env, hw.env()...)
		devices(a)
	}}
	fc.start(t)
	hw.tap.voiceAfter(t, time.Now(), 20*time.Second)
	return fc
}

// checkCallStayed fails the test if the agent or the viewer had to rejoin: a device fault
// must leave the call alone.
func checkCallStayed(t *testing.T, fc *faultCall, r *faultReport) {
	t.Helper()
	if r.last.Rejoins != 0 || fc.viewer.sessionCount() != 1 {
		t.Errorf("%s: the call did not stay up: agent rejoined %d times, viewer joined %d times", r.name, r.last.Rejoins, fc.viewer.sessionCount())
	}
}

// TestFaultCamera: the camera goes away for 2 s mid-call and comes back. The agent reports
// the failure (log and MQTT event) and reopens the camera with back-off; the sound goes on
// both ways meanwhile; recovery is the camera's return → the first IDR at the viewer.
func TestFaultCamera(t *testing.T) {
	n := faultRepeats(t, 2)
	hw := newDeviceRig(t)
	fc := startDeviceFaultCall(t, hw, func(a *agentProc) {
		a.camera, a.speaker = "rpicam", "alsa:faultspk"
		a.env = append(a.env, "CAMAGENT_WIDTH=320", "CAMAGENT_HEIGHT=240")
		a.logLevel = "info" // for "rpicam-vid started"
	})
	w := watchDevice(t, fc.broker, fc.dev)
	name := fmt.Sprintf("camera gone %v", cameraGone)
	var backLog int // the agent's output when the camera came back
	r := repeatFaultUntil(t, fc, name, "IDR again", n, 30*time.Second, func() time.Time {
		log, from := len(fc.agent.p.output()), w.mark()
		audio0, voiced0 := fc.viewer.audioCount(), hw.tap.voicedCount()
		gone := time.Now()
		hw.unplugCamera(t)
		fc.viewer.resetGap()
		line := fc.agent.waitLog(t, log, "camera failed; reopening", 10*time.Second)
		_, ev := w.wait(t, from, 10*time.Second, "camera error event", func(m mqMsg) bool {
			return strings.HasSuffix(m.topic, "/events") && strings.Contains(m.payload, `"camera: `)
		})
		time.Sleep(time.Until(gone.Add(cameraGone)))
		heard, said := fc.viewer.audioCount()-audio0, hw.tap.voicedCount()-voiced0
		t.Logf("camera gone: agent logged %s; event %s; meanwhile the viewer got %d audio packets (longest gap %v) and the speaker played the viewer's tone in %d frames of 20 ms (%d in the outage)",
			line, ev.payload, heard, fc.viewer.longestAudioGap().Round(time.Millisecond), said, cameraGone/device.FrameDuration)
		if heard == 0 || said == 0 {
			t.Errorf("the sound stopped with the camera: %d audio packets at the viewer, %d frames of its tone at the speaker", heard, said)
		}
		backLog = len(fc.agent.p.output())
		back := hw.plugCamera(t)
		t.Logf("camera back: video had stood still %v", fc.viewer.longestGap().Round(time.Millisecond))
		return back
	}, func(back time.Time) time.Time {
		at := fc.viewer.idrAfter(t, back, 30*time.Second)
		// Where the time went: the reopen's back-off step, then rpicam-vid's first picture.
		if started, ok := logTime(fc.agent.p.output()[backLog:], `msg="rpicam-vid started"`); ok {
			t.Logf("camera back → rpicam-vid started %v → IDR at the viewer %v", started.Sub(back).Round(time.Millisecond), at.Sub(started).Round(time.Millisecond))
		}
		return at
	})
	checkCallStayed(t, fc, r)
	r.check(t)
}

// TestFaultSpeaker: the sound card behind the speaker goes away for 5 s mid-call and comes
// back. The agent logs aplay's failure and restarts it with back-off; the viewer's video goes
// on meanwhile; recovery is the card's return → the viewer's tone at the speaker again.
// Repetitions are 10.5 s apart so that each starts from the first back-off step.
func TestFaultSpeaker(t *testing.T) {
	n := faultRepeats(t, 1)
	hw := newDeviceRig(t)
	fc := startDeviceFaultCall(t, hw, func(a *agentProc) { a.speaker = "alsa:faultspk" })
	w := watchDevice(t, fc.broker, fc.dev)
	name := fmt.Sprintf("speaker gone %v", speakerGone)
	healthy, rep := time.Now(), 0
	r := repeatFaultUntil(t, fc, name, "voice again at the speaker", n, 30*time.Second, func() time.Time {
		time.Sleep(time.Until(healthy.Add(speakerHealthy)))
		log, video0, audio0 := len(fc.agent.p.output()), fc.viewer.packetCount(), fc.viewer.audioCount()
		from := w.mark()
		gone := time.Now()
		hw.tap.close()
		fc.viewer.resetGap()
		line := fc.agent.waitLog(t, log, "aplay failed; restarting", 10*time.Second)
		if n := strings.Count(line, "component="); n != 1 {
			t.Errorf("the agent's ALSA line names %d components, want 1: %s", n, line)
		}
		_, ev := w.wait(t, from, 10*time.Second, "speaker error event", func(m mqMsg) bool {
			return strings.HasSuffix(m.topic, "/events") && strings.Contains(m.payload, `"speaker: `)
		})
		t.Logf("speaker gone: event %s", ev.payload)
		time.Sleep(time.Until(gone.Add(speakerGone)))
		seen, heard := fc.viewer.packetCount()-video0, fc.viewer.audioCount()-audio0
		t.Logf("speaker gone: agent logged %s; meanwhile the viewer got %d video packets (longest gap %v) and %d audio packets (longest gap %v)",
			line, seen, fc.viewer.longestGap().Round(time.Millisecond), heard, fc.viewer.longestAudioGap().Round(time.Millisecond))
		if rep++; rep == 1 {
			t.Logf("speaker gone: the agent's log over the first outage:\n%s", fc.agent.p.output()[log:])
		}
		if seen == 0 || heard == 0 {
			t.Errorf("the call stopped with the speaker: %d video and %d audio packets at the viewer", seen, heard)
		}
		return hw.tap.open(t)
	}, func(back time.Time) time.Time {
		at := hw.tap.voiceAfter(t, back, 30*time.Second)
		healthy = at
		return at
	})
	checkCallStayed(t, fc, r)
	r.check(t)
}

// requireDeviceTools fails (does not skip) the test without ffmpeg or aplay: `make test`
// installs them, and a skipped device path is an untested one.
func requireDeviceTools(t *testing.T) {
	t.Helper()
	for _, cmd := range []string{"ffmpeg", "aplay"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s not found: run `make test-deps` (Debian packages ffmpeg, alsa-utils): %v", cmd, err)
		}
	}
}

// waitLog waits until a line of the agent's output after offset from holds text and
// returns that line.
func (a *agentProc) waitLog(t *testing.T, from int, text string, timeout time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		out := a.p.output()[from:]
		if line, ok := logLine(out, text); ok {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not log %q within %v:\n%s", text, timeout, out)
		}
	}
}

// logLine is the first line of out that holds text.
func logLine(out, text string) (string, bool) {
	i := strings.Index(out, text)
	if i < 0 {
		return "", false
	}
	line, _, _ := strings.Cut(out[strings.LastIndex(out[:i], "\n")+1:], "\n")
	return line, true
}

// logTime is the time (slog's time=) of the first line of the agent's log out that holds text.
func logTime(out, text string) (time.Time, bool) {
	line, ok := logLine(out, text)
	if !ok {
		return time.Time{}, false
	}
	first, _, _ := strings.Cut(line, " ")
	stamp, ok := strings.CutPrefix(first, "time=")
	if !ok {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, stamp)
	return at, err == nil
}
