// Package mosquitto writes the files an external Mosquitto broker needs to enforce the hub's
// trust model (docs/mosquitto.md): an ACL file with the same rules as the embedded broker
// (each device confined to its own topics, the hub commanding, integration keys scoped to
// their devices), and entries of a Mosquitto password file in its PBKDF2-SHA512 ("$7$")
// format, so a device's credential never has to be typed on a command line.
package mosquitto

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/broker"
)

// ACLOptions are the names the ACL is written for.
type ACLOptions struct {
	Prefix   string // the MQTT topic prefix, "camagent"
	HAPrefix string // Home Assistant's discovery prefix, "homeassistant"; "" leaves discovery out
	HubUser  string // the hub's own account, "camhub"
	// FullUsers are further accounts with the hub's rights (the hub config's mqttUsername
	// for tools); none by default.
	FullUsers []string
	// Keys are the integration keys; those with MQTT set get an account named by their id.
	Keys []auth.Key
}

// ACL returns the text of a Mosquitto acl_file for o. Devices are covered by patterns on
// their user name (%u = the device id), so enrolling a device needs no new ACL lines; keys
// are listed one by one, so the file is written again after a key is added or deleted.
func ACL(o ACLOptions) (string, error) {
	if o.Prefix == "" || strings.ContainsAny(o.Prefix, "+#") || (o.HAPrefix != "" && strings.ContainsAny(o.HAPrefix, "+#/")) {
		return "", fmt.Errorf("mosquitto: unusable topic prefix %q / %q", o.Prefix, o.HAPrefix)
	}
	users := append([]string{o.HubUser}, o.FullUsers...)
	for _, u := range users {
		if !validUser(u) {
			return "", fmt.Errorf("mosquitto: unusable user name %q", u)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Mosquitto ACL for camagent, written by `camhub mosquitto acl` (docs/mosquitto.md).\n")
	fmt.Fprintf(&b, "# Written again after an MQTT key is added or deleted; then reload mosquitto.\n\n")
	fmt.Fprintf(&b, "# Each device logs in with its id as user name and reads only its commands and writes\n")
	fmt.Fprintf(&b, "# only its own topics. %%u is the user name, so every enrolled device is covered.\n")
	fmt.Fprintf(&b, "pattern read %s/%%u/cmd\n", o.Prefix)
	for _, leaf := range broker.DeviceLeaves {
		fmt.Fprintf(&b, "pattern write %s/%%u/%s\n", o.Prefix, leaf)
	}
	if o.HAPrefix != "" {
		fmt.Fprintf(&b, "# The device's own Home Assistant discovery topics (ids of a-z A-Z 0-9 _ - only).\n")
		fmt.Fprintf(&b, "pattern write %s/+/%%u/+/config\n", o.HAPrefix)
	}
	for _, u := range users {
		fmt.Fprintf(&b, "\n# The hub: the device directory and every command.\nuser %s\n", u)
		fmt.Fprintf(&b, "topic read %s/#\ntopic write %s/+/cmd\n", o.Prefix, o.Prefix)
	}
	keys := slices.Clone(o.Keys)
	slices.SortFunc(keys, func(a, b auth.Key) int { return strings.Compare(a.ID, b.ID) })
	for _, k := range keys {
		if !k.MQTT {
			continue
		}
		if !validUser(k.ID) {
			return "", fmt.Errorf("mosquitto: key id %q is not a usable user name", k.ID)
		}
		fmt.Fprintf(&b, "\n# Key %q: the devices it is scoped to.\nuser %s\n", k.Name, k.ID)
		if o.HAPrefix != "" {
			fmt.Fprintf(&b, "topic readwrite %s/status\n", o.HAPrefix)
		}
		for _, d := range k.Devices {
			switch {
			case d == "*":
				fmt.Fprintf(&b, "topic read %s/#\ntopic write %s/+/cmd\n", o.Prefix, o.Prefix)
				if o.HAPrefix != "" {
					fmt.Fprintf(&b, "topic read %s/#\n", o.HAPrefix)
				}
			case broker.ValidLevel(d) && !strings.ContainsAny(d, "\r\n"):
				fmt.Fprintf(&b, "topic read %s/%s/#\ntopic write %s/%s/cmd\n", o.Prefix, d, o.Prefix, d)
				if o.HAPrefix != "" {
					fmt.Fprintf(&b, "topic read %s/+/%s/+/config\n", o.HAPrefix, control.HANode(d))
				}
			}
		}
	}
	return b.String(), nil
}

// validUser: a name Mosquitto's files can hold (no line breaks, no ':') and an ACL pattern
// can substitute (a literal topic level).
func validUser(s string) bool {
	return broker.ValidLevel(s) && !strings.ContainsAny(s, ": \t\r\n")
}

// iterations of PBKDF2-SHA512; the secrets are 256-bit random, so this is not what keeps
// them safe, only what Mosquitto pays per login.
const iterations = 1000

// HashPassword returns a password file entry's hash in Mosquitto's "$7$" format.
func HashPassword(secret string) (string, error) {
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha512.New, secret, salt, iterations, sha512.Size)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$7$%d$%s$%s", iterations, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key)), nil
}

// SetPassword sets user's entry in the password file at path (made, mode 0640, if missing),
// keeping every other entry, the file's mode and its owner and group (Mosquitto must still
// read it after the write).
func SetPassword(path, user, secret string) error {
	if !validUser(user) {
		return fmt.Errorf("mosquitto: unusable user name %q", user)
	}
	if secret == "" {
		return errors.New("mosquitto: empty password")
	}
	h, err := HashPassword(secret)
	if err != nil {
		return fmt.Errorf("mosquitto: hash: %w", err)
	}
	return edit(path, user, user+":"+h)
}

// AddPassword is SetPassword for a new login: it refuses to replace an entry the file already
// has (a device id that is some key's id, or a device enrolled twice).
func AddPassword(path, user, secret string) error {
	if b, err := os.ReadFile(path); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if name, _, _ := strings.Cut(l, ":"); name == user {
				return fmt.Errorf("mosquitto: %s already has a login for %q (remove it first)", path, user)
			}
		}
	}
	return SetPassword(path, user, secret)
}

// RemoveUser deletes user's entry from the password file; a missing entry is not an error.
func RemoveUser(path, user string) error { return edit(path, user, "") }

// edit replaces user's line in the file with line ("" deletes it).
func edit(path, user, line string) error {
	old, err := os.ReadFile(path)
	mode, uid, gid := os.FileMode(0o640), -1, -1
	switch {
	case err == nil:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(st.Uid), int(st.Gid)
			}
		}
	case errors.Is(err, os.ErrNotExist):
		if line == "" {
			return nil
		}
	default:
		return fmt.Errorf("mosquitto: read password file: %w", err)
	}
	var out bytes.Buffer
	for _, l := range strings.Split(string(old), "\n") {
		if l == "" {
			continue
		}
		if name, _, _ := strings.Cut(l, ":"); name == user {
			continue
		}
		out.WriteString(l + "\n")
	}
	if line != "" {
		out.WriteString(line + "\n")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".camhub-passwd-*")
	if err != nil {
		return fmt.Errorf("mosquitto: write password file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if uid >= 0 {
		// Only root can give the file away; a same-owner rewrite needs no chown.
		if err := tmp.Chown(uid, gid); err != nil && os.Geteuid() == 0 {
			tmp.Close()
			return fmt.Errorf("mosquitto: keep the password file's owner: %w", err)
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("mosquitto: password file mode: %w", err)
	}
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("mosquitto: write password file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("mosquitto: write password file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("mosquitto: write password file: %w", err)
	}
	return nil
}
