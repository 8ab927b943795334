// Package natsconf writes the part of a NATS server's configuration that enforces the hub's
// trust model when a NATS cluster, through its MQTT listener, is the broker (docs/nats.md):
// an authorization block with one user per device, confined to its own topics, the hub's
// account, and one user per integration key with an MQTT login, scoped to its devices.
//
// NATS maps the MQTT topic a/b/c to the subject a.b.c, so the permissions are written on
// subjects. Every MQTT user may also subscribe to $MQTT.sub.>, the delivery subjects of the
// JetStream consumers behind QoS 1 subscriptions (without it NATS refuses the subscription);
// MQTT clients cannot name a $MQTT topic themselves, and devices and keys may connect only
// over MQTT (allowed_connection_types), so no device can subscribe to those subjects with a
// plain NATS client to read another device's commands.
//
// NATS checks bcrypt password hashes, not the hub's own credential hashes, so the hashes
// come from a password file of "user:bcrypt" lines kept beside the configuration
// (SetPassword writes an entry); an identity without an entry is left out and cannot log in.
package natsconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/broker"
)

// mqttDelivery is the subject space of the JetStream consumers that carry QoS 1 messages to
// MQTT subscribers.
const mqttDelivery = "$MQTT.sub.>"

// Options are the identities the authorization block is written for.
type Options struct {
	Prefix   string // the MQTT topic prefix, "camagent"
	HAPrefix string // Home Assistant's discovery prefix; "" leaves discovery out
	// HubUsers are the hub's accounts (its mqttUsername): every device's topics, commands to all.
	HubUsers []string
	Devices  []string   // device ids (the user name a device logs in with)
	Keys     []auth.Key // integration keys; those with MQTT set get a user named by their id
	// Hashes maps a user name to its bcrypt password hash (ReadPasswords). Users without one
	// are left out and listed in Config's second result.
	Hashes map[string]string
}

// user is one entry of the block.
type user struct {
	name     string
	pub, sub []string
	mqttOnly bool
}

// Config returns the text of a NATS `authorization { users = [...] }` block for o, to be
// included by every node of the cluster, and the users left out for want of a hash.
func Config(o Options) (string, []string, error) {
	if !subjectSafe(o.Prefix, true) || (o.HAPrefix != "" && !subjectSafe(o.HAPrefix, false)) {
		return "", nil, fmt.Errorf("natsconf: unusable topic prefix %q / %q", o.Prefix, o.HAPrefix)
	}
	p := strings.ReplaceAll(o.Prefix, "/", ".")
	var users []user
	for _, h := range o.HubUsers {
		users = append(users, user{name: h, pub: []string{p + ".*.cmd"}, sub: []string{p + ".>", mqttDelivery}})
	}
	for _, id := range o.Devices {
		if !subjectSafe(id, false) {
			return "", nil, fmt.Errorf("natsconf: device id %q cannot be a NATS subject token", id)
		}
		u := user{name: id, mqttOnly: true, sub: []string{p + "." + id + ".cmd", mqttDelivery}}
		for _, leaf := range broker.DeviceLeaves {
			u.pub = append(u.pub, p+"."+id+"."+leaf)
		}
		if o.HAPrefix != "" {
			u.pub = append(u.pub, o.HAPrefix+".*."+control.HANode(id)+".*.config")
		}
		users = append(users, u)
	}
	keys := slices.Clone(o.Keys)
	slices.SortFunc(keys, func(a, b auth.Key) int { return strings.Compare(a.ID, b.ID) })
	for _, k := range keys {
		if !k.MQTT {
			continue
		}
		if !subjectSafe(k.ID, false) {
			return "", nil, fmt.Errorf("natsconf: key id %q is not a usable user name", k.ID)
		}
		u := user{name: k.ID, mqttOnly: true, sub: []string{mqttDelivery}}
		if o.HAPrefix != "" {
			u.pub = append(u.pub, o.HAPrefix+".status")
			u.sub = append(u.sub, o.HAPrefix+".status")
		}
		for _, d := range k.Devices {
			switch {
			case d == auth.AllDevices:
				u.pub = append(u.pub, p+".*.cmd")
				u.sub = append(u.sub, p+".>")
				if o.HAPrefix != "" {
					u.sub = append(u.sub, o.HAPrefix+".>")
				}
			case subjectSafe(d, false):
				u.pub = append(u.pub, p+"."+d+".cmd")
				u.sub = append(u.sub, p+"."+d+".>")
				if o.HAPrefix != "" {
					u.sub = append(u.sub, o.HAPrefix+".*."+control.HANode(d)+".*.config")
				}
			}
		}
		users = append(users, u)
	}

	var b strings.Builder
	var missing []string
	b.WriteString("# NATS authorization for camagent, written by `camhub nats users` (docs/nats.md).\n")
	b.WriteString("# Include it from every node's configuration; write it again after a device or key is\n")
	b.WriteString("# added or deleted, then reload the nodes (nats-server --signal reload, or SIGHUP).\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		h, ok := o.Hashes[u.name]
		if !ok {
			missing = append(missing, u.name)
			continue
		}
		fmt.Fprintf(&b, "    {\n      user: %s\n      password: %s\n", strconv.Quote(u.name), strconv.Quote(h))
		if u.mqttOnly {
			b.WriteString("      allowed_connection_types: [\"MQTT\"]\n")
		}
		fmt.Fprintf(&b, "      permissions: {\n        publish: {allow: %s}\n        subscribe: {allow: %s}\n      }\n    }\n",
			list(u.pub), list(u.sub))
	}
	b.WriteString("  ]\n}\n")
	return b.String(), missing, nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "[]"
	}
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// subjectSafe: s can stand in a NATS subject as it is: an MQTT level without '.', wildcards,
// spaces or a leading '$' (slashOK: several levels, for the prefix).
func subjectSafe(s string, slashOK bool) bool {
	if s == "" || strings.ContainsAny(s, ".*> \t\r\n\"\\:") {
		return false
	}
	for _, lvl := range strings.Split(s, "/") {
		if !broker.ValidLevel(lvl) {
			return false
		}
	}
	return slashOK || !strings.Contains(s, "/")
}

// Hash returns the bcrypt hash NATS checks a password against. The credentials are 256-bit
// random, so the cost only sets what a login costs the broker.
func Hash(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("natsconf: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost+2)
	if err != nil {
		return "", fmt.Errorf("natsconf: bcrypt: %w", err)
	}
	return string(h), nil
}

// ReadPasswords reads a password file of "user:bcrypt" lines ('#' starts a comment).
func ReadPasswords(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natsconf: read passwords: %w", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		u, h, ok := strings.Cut(line, ":")
		if !ok || u == "" || !strings.HasPrefix(h, "$2") {
			return nil, fmt.Errorf("natsconf: %s line %d is not user:bcrypt-hash", path, n)
		}
		out[u] = h
	}
	return out, nil
}

// SetPassword sets user's entry in the password file at path (made, mode 0600, if missing),
// keeping every other entry.
func SetPassword(path, name, secret string) error {
	if !subjectSafe(name, false) {
		return fmt.Errorf("natsconf: unusable user name %q", name)
	}
	h, err := Hash(secret)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("natsconf: read passwords: %w", err)
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, name+":") {
			continue
		}
		b.WriteString(line + "\n")
	}
	b.WriteString(name + ":" + h + "\n")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("natsconf: write passwords: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("natsconf: write passwords: %w", err)
	}
	return nil
}
