package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Permissions a person or key has on a device.
const (
	PermView    = "view"    // watch the camera, hear its microphone
	PermTalk    = "talk"    // be heard on its speaker
	PermCommand = "command" // send it any MQTT command (join, leave, snapshot, privacy…)
	PermAdmin   = "admin"   // all of the above
)

// Key actions besides the device permissions.
const (
	ActionToken   = "token"   // mint channel tokens (POST /api/token) in the key's Apps and channels
	ActionMetrics = "metrics" // read /metrics
)

// AllDevices in a permission map or a key's device list means every device.
const AllDevices = "*"

// FileName is the identity file in the hub's state directory.
const FileName = "identities.json"

type data struct {
	Users   map[string]*User   `json:"users"`
	Devices map[string]*Device `json:"devices"`
	Keys    map[string]*Key    `json:"keys"`
}

// Store is the identity file, shared by the running hub and the camhub CLI: every change is
// made under an exclusive lock on the file's directory entry and written atomically, and a
// reader notices another process's changes within a second.
type Store struct {
	path string

	mu      sync.Mutex
	d       data
	stamp   fileStamp
	checked time.Time
	// onChange runs (outside mu) after a reload or write, e.g. to drop revoked MQTT sessions.
	onChange func()
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Open opens (or creates, empty) the identity file in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: create state directory: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName)}
	if err := s.reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the identity file's path.
func (s *Store) Path() string { return s.path }

// OnChange sets a function run after the identities changed (in this process or another).
func (s *Store) OnChange(f func()) {
	s.mu.Lock()
	s.onChange = f
	s.mu.Unlock()
}

func emptyData() data {
	return data{Users: map[string]*User{}, Devices: map[string]*Device{}, Keys: map[string]*Key{}}
}

// reload reads the file when it changed (force: always).
func (s *Store) reload(force bool) error {
	s.mu.Lock()
	if !force && time.Since(s.checked) < time.Second {
		s.mu.Unlock()
		return nil
	}
	s.checked = time.Now()
	st, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		changed := s.stamp != (fileStamp{})
		s.d, s.stamp = emptyData(), fileStamp{}
		f := s.onChange
		s.mu.Unlock()
		if changed && f != nil {
			f()
		}
		return nil
	}
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("auth: %w", err)
	}
	stamp := fileStamp{st.ModTime(), st.Size()}
	if !force && stamp == s.stamp {
		s.mu.Unlock()
		return nil
	}
	d, err := readData(s.path)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.d, s.stamp = d, stamp
	f := s.onChange
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}

func readData(path string) (data, error) {
	d := emptyData()
	b, err := os.ReadFile(path)
	if err != nil {
		return d, fmt.Errorf("auth: read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("auth: %s is not a valid identity file: %w", path, err)
	}
	if d.Users == nil {
		d.Users = map[string]*User{}
	}
	if d.Devices == nil {
		d.Devices = map[string]*Device{}
	}
	if d.Keys == nil {
		d.Keys = map[string]*Key{}
	}
	return d, nil
}

// view runs f on the current identities (reloaded if another process changed them).
func (s *Store) view(f func(d *data)) {
	if err := s.reload(false); err != nil {
		// Keep what we have: a half-written file cannot be seen (writes are atomic), so this
		// is a permissions or disk problem the next write will report.
		_ = err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.d)
}

// update changes the identities under the file lock: it reads the file, runs f, and writes
// the result if f returns nil.
func (s *Store) update(f func(d *data) error) error {
	lock, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("auth: lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("auth: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	d := emptyData()
	if _, err := os.Stat(s.path); err == nil {
		if d, err = readData(s.path); err != nil {
			return err
		}
	}
	if err := f(&d); err != nil {
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: encode: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("auth: write: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("auth: write: %w", err)
	}
	return s.reload(true)
}

// ValidName reports whether name may be a user name, device id or key name: 1-64 characters,
// no control characters, none of / + # (MQTT topic levels) and no spaces.
func ValidName(name string) bool {
	if name == "" || len(name) > 64 || name == AllDevices {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("/+#*", r) {
			return false
		}
	}
	return true
}

// Refresh rereads the file if another process changed it (at most once a second).
func (s *Store) Refresh() error { return s.reload(false) }
