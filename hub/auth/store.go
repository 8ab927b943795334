package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sort"
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

// User is a person who logs in to the hub's pages.
type User struct {
	Name         string `json:"name"`
	PasswordHash string `json:"passwordHash"`
	// Admin manages users, devices and keys and has every permission on every device.
	Admin bool `json:"admin,omitempty"`
	// Permissions maps a device id (or AllDevices) to the permissions on it.
	Permissions map[string][]string `json:"permissions,omitempty"`
	Created     time.Time           `json:"created"`
	// Generation changes with the password: sessions made before end.
	Generation int `json:"generation"`
}

// Device is an enrolled device.
type Device struct {
	ID string `json:"id"`
	// UID is the only uid the device may obtain tokens for.
	UID        uint32    `json:"uid"`
	KeyID      string    `json:"keyId"`
	SecretHash string    `json:"secretHash"`
	Created    time.Time `json:"created"`
}

// Key is an integration's API key (Home Assistant, scripts, a customer backend).
type Key struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	SecretHash string `json:"secretHash"`
	// Devices it may act on (AllDevices: every one); Actions: view, talk, command or single
	// command actions (join, leave, status, snapshot, privacy), token, metrics.
	Devices []string `json:"devices,omitempty"`
	Actions []string `json:"actions,omitempty"`
	// Apps and Channels (exact names, a trailing * for a prefix, or *) it may mint tokens for.
	Apps     []string `json:"apps,omitempty"`
	Channels []string `json:"channels,omitempty"`
	// MaxTTL bounds the tokens it mints and the ones minted for it by /watch.
	MaxTTL Duration `json:"maxTTL"`
	// MQTT lets it log in to the embedded broker (user name: the key id) to command and read
	// its devices.
	MQTT    bool      `json:"mqtt,omitempty"`
	Created time.Time `json:"created"`
}

// Duration is a time.Duration written as text ("1h0m0s") in the file.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

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

var validPerms = []string{PermView, PermTalk, PermCommand, PermAdmin}

// CheckPermissions validates a permission map.
func CheckPermissions(p map[string][]string) error {
	for dev, perms := range p {
		if dev != AllDevices && !ValidName(dev) {
			return fmt.Errorf("auth: %q is not a device id", dev)
		}
		for _, perm := range perms {
			if !slices.Contains(validPerms, perm) {
				return fmt.Errorf("auth: %q is not a permission (want %s)", perm, strings.Join(validPerms, ", "))
			}
		}
	}
	return nil
}

// AddUser adds a person.
func (s *Store) AddUser(name, password string, admin bool, perms map[string][]string) error {
	if !ValidName(name) {
		return fmt.Errorf("auth: %q is not a valid user name (1-64 characters, no spaces, / + # *)", name)
	}
	if err := CheckPermissions(perms); err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return s.update(func(d *data) error {
		if d.Users[name] != nil {
			return fmt.Errorf("auth: user %q exists", name)
		}
		d.Users[name] = &User{Name: name, PasswordHash: hash, Admin: admin, Permissions: perms, Created: time.Now().UTC()}
		return nil
	})
}

// UserChange is what SetUser changes; nil fields stay.
type UserChange struct {
	Password    *string
	Admin       *bool
	Permissions map[string][]string
	// ReplacePermissions replaces the map (else Permissions are merged in, per device).
	ReplacePermissions bool
}

// SetUser changes a person.
func (s *Store) SetUser(name string, ch UserChange) error {
	if err := CheckPermissions(ch.Permissions); err != nil {
		return err
	}
	var hash string
	if ch.Password != nil {
		h, err := HashPassword(*ch.Password)
		if err != nil {
			return err
		}
		hash = h
	}
	return s.update(func(d *data) error {
		u := d.Users[name]
		if u == nil {
			return fmt.Errorf("auth: no user %q", name)
		}
		if hash != "" {
			u.PasswordHash = hash
			u.Generation++
		}
		if ch.Admin != nil {
			u.Admin = *ch.Admin
			u.Generation++
		}
		if ch.ReplacePermissions {
			u.Permissions = ch.Permissions
		} else if len(ch.Permissions) > 0 {
			if u.Permissions == nil {
				u.Permissions = map[string][]string{}
			}
			for dev, p := range ch.Permissions {
				if len(p) == 0 {
					delete(u.Permissions, dev)
				} else {
					u.Permissions[dev] = p
				}
			}
		}
		return nil
	})
}

// DeleteUser removes a person (their sessions end).
func (s *Store) DeleteUser(name string) error {
	return s.update(func(d *data) error {
		if d.Users[name] == nil {
			return fmt.Errorf("auth: no user %q", name)
		}
		delete(d.Users, name)
		return nil
	})
}

// Users lists the people (without password hashes), sorted by name.
func (s *Store) Users() []User {
	var out []User
	s.view(func(d *data) {
		for _, u := range d.Users {
			c := *u
			c.PasswordHash = ""
			out = append(out, c)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// HasUsers reports whether any person exists (the first-run step has been done).
func (s *Store) HasUsers() bool {
	n := 0
	s.view(func(d *data) { n = len(d.Users) })
	return n > 0
}

// user returns a copy of a person.
func (s *Store) user(name string) (User, bool) {
	var u User
	ok := false
	s.view(func(d *data) {
		if p := d.Users[name]; p != nil {
			u, ok = *p, true
		}
	})
	return u, ok
}

// DefaultUID is the uid of a device enrolled without one: the same stable hash of its id the
// agent uses when it has no uid configured.
func DefaultUID(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	if uid := h.Sum32() & 0x7fffffff; uid != 0 {
		return uid
	}
	return 1
}

// AddDevice enrols a device and returns its credential (shown once: only its hash is kept).
// uid 0 means DefaultUID(id).
func (s *Store) AddDevice(id string, uid uint32) (credential string, dev Device, err error) {
	if !ValidName(id) {
		return "", Device{}, fmt.Errorf("auth: %q is not a valid device id (1-64 characters, no spaces, / + # *)", id)
	}
	if uid == 0 {
		uid = DefaultUID(id)
	}
	text, keyID, hash := newCredential(KindDevice)
	err = s.update(func(d *data) error {
		if d.Devices[id] != nil {
			return fmt.Errorf("auth: device %q is enrolled already (delete it first to make a new credential)", id)
		}
		dev = Device{ID: id, UID: uid, KeyID: keyID, SecretHash: hash, Created: time.Now().UTC()}
		d.Devices[id] = &dev
		return nil
	})
	if err != nil {
		return "", Device{}, err
	}
	return text, dev, nil
}

// DeleteDevice revokes a device's credential.
func (s *Store) DeleteDevice(id string) error {
	return s.update(func(d *data) error {
		if d.Devices[id] == nil {
			return fmt.Errorf("auth: no device %q", id)
		}
		delete(d.Devices, id)
		return nil
	})
}

// Devices lists the enrolled devices (without hashes), sorted by id.
func (s *Store) Devices() []Device {
	var out []Device
	s.view(func(d *data) {
		for _, dev := range d.Devices {
			c := *dev
			c.SecretHash = ""
			out = append(out, c)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Device returns an enrolled device.
func (s *Store) Device(id string) (Device, bool) {
	var dev Device
	ok := false
	s.view(func(d *data) {
		if p := d.Devices[id]; p != nil {
			dev, ok = *p, true
		}
	})
	return dev, ok
}

var keyActions = []string{PermView, PermTalk, PermCommand, "join", "leave", "status", "snapshot", "privacy", ActionToken, ActionMetrics}

// MaxKeyTTL is the longest token lifetime a key may be given.
const MaxKeyTTL = 24 * time.Hour

// AddKey makes an API key and returns its text (shown once).
func (s *Store) AddKey(k Key) (text string, out Key, err error) {
	if !ValidName(k.Name) {
		return "", Key{}, fmt.Errorf("auth: %q is not a valid key name (1-64 characters, no spaces, / + # *)", k.Name)
	}
	for _, a := range k.Actions {
		if !slices.Contains(keyActions, a) {
			return "", Key{}, fmt.Errorf("auth: %q is not a key action (want %s)", a, strings.Join(keyActions, ", "))
		}
	}
	for _, dev := range k.Devices {
		if dev != AllDevices && !ValidName(dev) {
			return "", Key{}, fmt.Errorf("auth: %q is not a device id", dev)
		}
	}
	if k.MaxTTL == 0 {
		k.MaxTTL = Duration(time.Hour)
	}
	if k.MaxTTL < 0 || time.Duration(k.MaxTTL) > MaxKeyTTL {
		return "", Key{}, fmt.Errorf("auth: a key's maximum token lifetime is between 1s and %s", MaxKeyTTL)
	}
	if len(k.Actions) == 0 {
		return "", Key{}, errors.New("auth: a key needs at least one action")
	}
	text, keyID, hash := newCredential(KindKey)
	k.ID, k.SecretHash, k.Created = keyID, hash, time.Now().UTC()
	err = s.update(func(d *data) error {
		d.Keys[keyID] = &k
		return nil
	})
	if err != nil {
		return "", Key{}, err
	}
	k.SecretHash = ""
	return text, k, nil
}

// DeleteKey revokes a key (by id, or by name when exactly one key has it).
func (s *Store) DeleteKey(idOrName string) error {
	return s.update(func(d *data) error {
		if d.Keys[idOrName] != nil {
			delete(d.Keys, idOrName)
			return nil
		}
		var found []string
		for id, k := range d.Keys {
			if k.Name == idOrName {
				found = append(found, id)
			}
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("auth: no key %q", idOrName)
		case 1:
			delete(d.Keys, found[0])
			return nil
		}
		return fmt.Errorf("auth: %d keys are named %q: delete one by id", len(found), idOrName)
	})
}

// Keys lists the keys (without hashes), sorted by name.
func (s *Store) Keys() []Key {
	var out []Key
	s.view(func(d *data) {
		for _, k := range d.Keys {
			c := *k
			c.SecretHash = ""
			out = append(out, c)
		}
	})
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].ID < out[j].ID
	})
	return out
}

// Refresh rereads the file if another process changed it (at most once a second).
func (s *Store) Refresh() error { return s.reload(false) }
