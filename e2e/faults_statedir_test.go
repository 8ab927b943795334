package e2e

// A state directory the agent cannot write (docs/reliability.md): full (a 64 KiB tmpfs
// filled up) or read-only (a read-only tmpfs) from the start. The agent must start, say why
// it cannot keep what it would keep there, refuse a command that needs it with a clear error,
// and still do what it can: go online, join a call and send video.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// mountStateDir mounts a small tmpfs (options as mount -o) on dir until the test ends.
func mountStateDir(t *testing.T, dir, opts string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a full or read-only state directory needs root (a tmpfs mount)")
	}
	must(t, os.MkdirAll(dir, 0o755), "state dir")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func TestFaultStateDir(t *testing.T) {
	for _, sc := range []struct{ name, opts string }{
		{"full", "size=64k"},
		{"read-only", "size=64k,ro"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			b := startRigBroker(t, "127.0.0.1:0")
			t.Cleanup(func() { b.stop(t) })
			fc := &faultCall{broker: b.url(), dev: "e2e-faults-state-" + sc.name}
			hubBin, agentBin := rigBinaries(t)
			fc.hub = newHubProc(t, hubBin, b.url())
			fc.hub.start()
			fc.agent = newAgentProc(t, agentBin, fc.dev, b.url(), fc.hub.url())
			fc.agent.logLevel = "info"
			state := filepath.Join(fc.agent.dir, "state")
			mountStateDir(t, state, sc.opts)
			if sc.name == "full" { // fill it: the write fails with ENOSPC
				f, err := os.Create(filepath.Join(state, "filler"))
				must(t, err, "filler")
				_, err = f.Write(make([]byte, 1<<20))
				f.Close()
				if err == nil || !strings.Contains(err.Error(), "no space") {
					t.Fatalf("filling the tmpfs: %v, want no space left", err)
				}
			}
			fc.agent.start()
			w := watchDevice(t, b.url(), fc.dev)
			w.wait(t, 0, 10*time.Second, "online", topicIs("camagent/"+fc.dev+"/status", "online"))

			// Privacy mode is kept in the state directory: the command fails and says why.
			w.send(t, fc.dev, `{"id":"priv","action":"privacy","on":true}`)
			r := w.reply(t, fc.dev, "priv", 10*time.Second)
			t.Logf("privacy on, state directory %s: ok=%v error=%q", sc.name, r.OK, r.Error)
			if r.OK || !strings.Contains(r.Error, state) {
				t.Errorf("privacy on with a %s state directory: reply %+v, want ok:false naming %s", sc.name, r, state)
			}
			// The rest works: a call with video at the viewer.
			fc.join(t)
			fc.agent.waitState(control.StateJoined, 5*time.Second)
			if _, err := fc.agent.sample(); err != nil {
				t.Fatalf("the agent stopped answering: %v", err)
			}
			out := fc.agent.p.output()
			if !strings.Contains(out, "state directory not writable") {
				t.Errorf("the agent did not say at start that its state directory is not writable:\n%s", out)
			}
			if strings.Contains(out, "panic") {
				t.Errorf("the agent panicked:\n%s", out)
			}
		})
	}
}
