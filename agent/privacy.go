package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Privacy mode: on, the agent leaves any call (which closes the camera, the microphone and
// the speaker), refuses joins and snapshots, and clears its retained snapshot. The mode is
// kept in the file "privacy" of the state directory ("on" or "off"), so a restart — a
// crash, a reboot, an upgrade — never turns the camera back on by itself.

// privacyFile is where the mode is kept.
func (a *Agent) privacyFile() string { return filepath.Join(a.cfg.StateDir, "privacy") }

// ErrPrivacy is the refusal of a join or snapshot while privacy mode is on.
var ErrPrivacy = errors.New(`privacy mode is on: the camera and microphone are off; send {"action":"privacy","on":false} first`)

// loadPrivacy reads the kept mode at start. An unreadable file keeps privacy on: a device
// that cannot tell whether it should watch does not.
func (a *Agent) loadPrivacy() {
	defer a.checkStateDir()
	b, err := os.ReadFile(a.privacyFile())
	switch {
	case errors.Is(err, os.ErrNotExist):
		return
	case err != nil:
		a.log.Error("privacy mode file unreadable: keeping privacy on", "path", a.privacyFile(), "err", err)
		a.privacy.Store(true)
	default:
		on := strings.TrimSpace(string(b)) != "off"
		a.privacy.Store(on)
		if on {
			a.log.Info("privacy mode is on (kept from before the restart)", "path", a.privacyFile())
		}
	}
	a.state.Privacy = a.privacy.Load()
}

// checkStateDir says at start when the state directory cannot be written (full, read-only,
// not ours): the agent runs on, but a privacy command will be refused until it can.
func (a *Agent) checkStateDir() {
	err := os.MkdirAll(a.cfg.StateDir, 0o755)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(a.cfg.StateDir, ".probe-*"); err == nil {
			_, err = f.WriteString("probe\n")
			err = errors.Join(err, f.Sync(), f.Close(), os.Remove(f.Name()))
		}
	}
	if err != nil {
		a.log.Warn("state directory not writable: privacy mode cannot be changed until it is; everything else runs",
			"dir", a.cfg.StateDir, "err", err)
	}
}

// savePrivacy writes the mode: a temporary file renamed over the old one, so a power cut
// leaves the old mode or the new one, never an empty file.
func (a *Agent) savePrivacy(on bool) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("keep privacy mode: %w", err)
	}
	v := "off\n"
	if on {
		v = "on\n"
	}
	tmp, err := os.CreateTemp(a.cfg.StateDir, ".privacy-*")
	if err != nil {
		return fmt.Errorf("keep privacy mode: %w", err)
	}
	_, werr := tmp.WriteString(v)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("keep privacy mode: %w", err) // the error names the file
	}
	if err := os.Rename(tmp.Name(), a.privacyFile()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("keep privacy mode: %w", err)
	}
	return nil
}

// setPrivacy runs a privacy command. The mode is saved before it takes effect: a mode
// that would not survive a restart is refused and changes nothing.
func (a *Agent) setPrivacy(on bool) error {
	if err := a.savePrivacy(on); err != nil {
		return err
	}
	a.privacy.Store(on)
	if on {
		a.leave("privacy mode") // closes the camera, the microphone and the speaker
		// No picture of the place stays on the broker (or in the hub, which drops its copy).
		if err := a.ctrl.PublishSnapshot(nil); err != nil {
			a.log.Warn("privacy mode: could not clear the retained snapshot", "err", err)
		}
	}
	a.log.Info("privacy mode", "on", on)
	st := a.State()
	st.Privacy = on
	a.setState(st)
	return nil
}
