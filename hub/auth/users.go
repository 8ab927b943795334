package auth

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

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
