package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

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
