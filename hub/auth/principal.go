package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Principal kinds.
const (
	PrincipalPerson = "person"
	PrincipalDevice = "device"
	PrincipalKey    = "key"
	// PrincipalDemo is a loopback client of a hub in demo mode: it may do everything.
	PrincipalDemo = "demo"
)

// Principal is who made a request, and what they may do.
type Principal struct {
	Kind string
	// Name is the user name, device id or key name.
	Name string
	// CredID names the credential in logs: the key id, or a session's short id.
	CredID string

	user   *User
	device *Device
	key    *Key
}

// Demo is the principal of a trusted loopback client in demo mode.
func Demo() *Principal { return &Principal{Kind: PrincipalDemo, Name: "demo", CredID: "loopback"} }

// String is how logs name the principal: kind, name and credential id, never a secret.
func (p *Principal) String() string {
	if p == nil {
		return "anonymous"
	}
	return p.Kind + ":" + p.Name + "(" + p.CredID + ")"
}

// Admin reports whether p manages the hub (users, devices, keys) and may do everything.
func (p *Principal) Admin() bool {
	return p != nil && (p.Kind == PrincipalDemo || p.user != nil && p.user.Admin)
}

// Device is the enrolled device p is (nil for others).
func (p *Principal) Device() *Device {
	if p == nil {
		return nil
	}
	return p.device
}

// Key is the API key p is (nil for others).
func (p *Principal) Key() *Key {
	if p == nil {
		return nil
	}
	return p.key
}

// Permissions returns p's permissions on device id (admin implies all).
func (p *Principal) Permissions(id string) []string {
	var out []string
	for _, perm := range validPerms {
		if p.Can(id, perm) {
			out = append(out, perm)
		}
	}
	return out
}

// Can reports whether p has permission perm (view, talk, command, admin) on device id.
func (p *Principal) Can(id, perm string) bool {
	switch {
	case p == nil:
		return false
	case p.Admin():
		return true
	case p.user != nil:
		for _, dev := range []string{id, AllDevices} {
			perms := p.user.Permissions[dev]
			if slices.Contains(perms, perm) || slices.Contains(perms, PermAdmin) {
				return true
			}
		}
	case p.key != nil:
		if !matchList(p.key.Devices, id) {
			return false
		}
		return slices.Contains(p.key.Actions, perm) || perm == PermView && slices.Contains(p.key.Actions, PermTalk)
	}
	return false
}

// CanCommand reports whether p may send device id the MQTT command action.
func (p *Principal) CanCommand(id, action string) bool {
	if p.Can(id, PermCommand) {
		return true
	}
	return p != nil && p.key != nil && matchList(p.key.Devices, id) && slices.Contains(p.key.Actions, action)
}

// CanMetrics reports whether p may read /metrics.
func (p *Principal) CanMetrics() bool {
	return p.Admin() || p != nil && p.key != nil && slices.Contains(p.key.Actions, ActionMetrics)
}

// MaxTTL is the longest token p may be given (0: the service's own cap).
func (p *Principal) MaxTTL() time.Duration {
	if p != nil && p.key != nil {
		return time.Duration(p.key.MaxTTL)
	}
	return 0
}

// MintRequest is a token p asks the token service for.
type MintRequest struct {
	App, Channel string
	UID          uint32
	Publishes    bool // the token would grant publishing audio or video
	TTL          time.Duration
}

// ErrForbidden wraps every refusal of MayMint.
var ErrForbidden = errors.New("forbidden")

func forbid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrForbidden}, args...)...)
}

// MayMint says whether p may have the token of r minted by POST /api/token.
func (p *Principal) MayMint(r MintRequest) error {
	if r.Publishes && r.UID == 0 {
		return forbid("a token that publishes must name its uid (uid 0 admits anyone)")
	}
	switch {
	case p == nil:
		return forbid("no credential")
	case p.Admin():
		return nil
	case p.device != nil:
		if r.UID != p.device.UID {
			return forbid("device %s may obtain tokens for its own uid %d only, not %d", p.device.ID, p.device.UID, r.UID)
		}
		return nil
	case p.key != nil:
		k := p.key
		if !slices.Contains(k.Actions, ActionToken) {
			return forbid("key %s may not mint tokens (no %q action)", k.ID, ActionToken)
		}
		if !matchList(k.Apps, r.App) {
			return forbid("key %s may not mint tokens for App %q", k.ID, r.App)
		}
		if !matchList(k.Channels, r.Channel) {
			return forbid("key %s may not mint tokens for channel %q", k.ID, r.Channel)
		}
		if r.TTL > time.Duration(k.MaxTTL) {
			return forbid("key %s mints tokens of at most %s", k.ID, time.Duration(k.MaxTTL))
		}
		return nil
	case p.user != nil:
		return forbid("people get tokens through /api/devices/<id>/watch; only admins mint any token")
	}
	return forbid("no credential")
}

// matchList reports whether name is in list: exact, "*", or a "prefix*" entry.
func matchList(list []string, name string) bool {
	for _, e := range list {
		if e == AllDevices || e == name {
			return true
		}
		if pre, ok := strings.CutSuffix(e, "*"); ok && pre != "" && strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

// ErrBadCredential is a bearer credential that is malformed, unknown or revoked.
var ErrBadCredential = errors.New("auth: unknown or revoked credential")

// Bearer authenticates a device credential or API key presented as a bearer token.
func (s *Store) Bearer(text string) (*Principal, error) {
	c, err := parseCredential(text)
	if err != nil {
		return nil, err
	}
	var p *Principal
	s.view(func(d *data) {
		switch c.kind {
		case KindKey:
			if k := d.Keys[c.keyID]; k != nil && secretMatches(c.secret, k.SecretHash) {
				kc := *k
				p = &Principal{Kind: PrincipalKey, Name: k.Name, CredID: k.ID, key: &kc}
			}
		case KindDevice:
			for _, dev := range d.Devices {
				if dev.KeyID == c.keyID && secretMatches(c.secret, dev.SecretHash) {
					dc := *dev
					p = &Principal{Kind: PrincipalDevice, Name: dev.ID, CredID: dev.KeyID, device: &dc}
					break
				}
			}
		}
	})
	if p == nil {
		return nil, ErrBadCredential
	}
	return p, nil
}

// DeviceLogin authenticates a device by id and credential (an MQTT CONNECT).
func (s *Store) DeviceLogin(id, credText string) (*Principal, bool) {
	p, err := s.Bearer(credText)
	if err != nil || p.device == nil || p.device.ID != id {
		return nil, false
	}
	return p, true
}

// KeyLogin authenticates an API key allowed to use MQTT, by key id and key text.
func (s *Store) KeyLogin(keyID, keyText string) (*Principal, bool) {
	p, err := s.Bearer(keyText)
	if err != nil || p.key == nil || p.key.ID != keyID || !p.key.MQTT {
		return nil, false
	}
	return p, true
}

// ErrNoUsers is returned by Login before the first person has been made.
var ErrNoUsers = errors.New("auth: no users yet: run `camhub user add admin --admin` on the hub machine")

// ErrLogin is a failed login (unknown user or wrong password: the same answer).
var ErrLogin = errors.New("auth: wrong user name or password")

// Login checks a person's password.
func (s *Store) Login(name, password string) (*Principal, error) {
	u, ok := s.user(name)
	if !ok {
		CheckPassword(dummyHash, password) // as slow as a real check
		if !s.HasUsers() {
			return nil, ErrNoUsers
		}
		return nil, ErrLogin
	}
	if !CheckPassword(u.PasswordHash, password) {
		return nil, ErrLogin
	}
	return &Principal{Kind: PrincipalPerson, Name: u.Name, user: &u}, nil
}

// person returns the current principal of user name at generation gen (false when the user
// was deleted or their password changed since).
func (s *Store) person(name string, gen int, credID string) (*Principal, bool) {
	u, ok := s.user(name)
	if !ok || u.Generation != gen {
		return nil, false
	}
	return &Principal{Kind: PrincipalPerson, Name: u.Name, CredID: credID, user: &u}, true
}

// Generation is the person's session generation (for a new session).
func (p *Principal) generation() int {
	if p == nil || p.user == nil {
		return 0
	}
	return p.user.Generation
}
