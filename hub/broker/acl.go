package broker

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/camagent/camagent/control"
)

// Identity kinds.
const (
	KindHub         = "hub"         // the hub itself and accounts from Options.Users: every topic
	KindDevice      = "device"      // one device: its own topics only
	KindIntegration = "integration" // an API key with an MQTT login: the devices it is scoped to
	KindAnonymous   = "anonymous"   // demo mode on loopback: every topic
)

// DeviceLeaves are the topics a device publishes under <prefix>/<id>/ (hub/mosquitto writes
// the same rules for an external broker).
var DeviceLeaves = []string{"status", "state", "reply", "events", "snapshot"}

// rules is what one connected identity may read and write, worked out once
// at CONNECT. Read rules are topic filters: a subscription is allowed only
// when every topic it can match is matched by one of them.
type rules struct {
	all   bool     // hub and anonymous: no checks
	read  []string // filters that cover what may be read
	write []string // exact topics that may be written
	// anyCmd: an integration on "*" may write <prefix>/<any device>/cmd
	anyCmd bool
	prefix string
	// haConfig: discovery topics whose payload is checked (a device's own)
	haConfig []string
	// own: the topics a device's discovery payloads may name
	own []string
	// watch: filters an integration may subscribe to though they reach beyond what it may
	// read, because each message is checked again as it is delivered (mochi checks every
	// delivery, retained ones too): Home Assistant's discovery filters, so Home Assistant
	// logged in with a key scoped to some devices discovers exactly those, as on Mosquitto.
	watch []string
}

// rulesFor works out id's rules under the topic prefix and Home Assistant
// discovery prefix.
func rulesFor(id Identity, prefix, haPrefix string) rules {
	switch id.Kind {
	case KindHub, KindAnonymous:
		return rules{all: true}
	case KindDevice:
		if !ValidLevel(id.Name) {
			return rules{} // nothing at all; New's Authenticator should not make such a device
		}
		tp := control.Topics{Prefix: prefix, ID: id.Name}
		r := rules{read: []string{tp.Cmd()}}
		for _, leaf := range DeviceLeaves {
			r.write = append(r.write, prefix+"/"+id.Name+"/"+leaf)
		}
		r.own = append(slices.Clone(r.write), tp.Cmd())
		// Exactly the discovery topics the agent writes (control.DiscoveryMessages),
		// with every optional entity on.
		for _, d := range control.DiscoveryMessages(tp, control.HomeAssistant{Prefix: haPrefix, DefaultChannel: "x"}, "") {
			r.haConfig = append(r.haConfig, d.Topic)
		}
		r.write = append(r.write, r.haConfig...)
		return r
	case KindIntegration:
		r := rules{
			prefix: prefix,
			read:   []string{haPrefix + "/status"},
			write:  []string{haPrefix + "/status"}, // Home Assistant's birth and will
			watch:  []string{haPrefix + "/+/+/config", haPrefix + "/+/+/+/config"},
		}
		for _, d := range id.Devices {
			switch {
			case d == "*":
				r.read = append(r.read, prefix+"/#", haPrefix+"/#")
				r.anyCmd = true
			case ValidLevel(d):
				r.read = append(r.read,
					prefix+"/"+d+"/#",
					haPrefix+"/+/"+haNode(prefix, haPrefix, d)+"/+/config")
				r.write = append(r.write, prefix+"/"+d+"/cmd")
			}
		}
		return r
	}
	return rules{}
}

// ValidLevel reports whether s is a usable, literal topic level.
func ValidLevel(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/+#\x00") && !strings.HasPrefix(s, "$")
}

// canRead reports whether filter (a topic, or a filter with wildcards) may be
// subscribed to or delivered: every topic it can match must be allowed.
func (r *rules) canRead(filter string) bool {
	if r.all {
		return true
	}
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		// A shared subscription: $share/<group>/<filter>.
		_, f, ok := strings.Cut(rest, "/")
		if !ok {
			return false
		}
		filter = f
	}
	if slices.Contains(r.watch, filter) {
		return true // a subscription only: no topic a message is delivered on has a "+"
	}
	for _, p := range r.read {
		if covers(p, filter) {
			return true
		}
	}
	return false
}

// canWrite reports whether a message may be published on topic (never a
// filter: wildcards are not valid in a published topic name).
func (r *rules) canWrite(topic string) bool {
	if r.all {
		return true
	}
	if strings.ContainsAny(topic, "+#") {
		return false
	}
	if slices.Contains(r.write, topic) {
		return true
	}
	if r.anyCmd {
		if rest, ok := strings.CutPrefix(topic, r.prefix+"/"); ok {
			if dev, ok := strings.CutSuffix(rest, "/cmd"); ok && ValidLevel(dev) {
				return true
			}
		}
	}
	return false
}

// haNode is the node id the agent uses in device id's discovery topics
// (<haPrefix>/<component>/<node>/<object>/config), taken from control so the
// two cannot drift apart.
func haNode(prefix, haPrefix, id string) string {
	msgs := control.DiscoveryMessages(control.Topics{Prefix: prefix, ID: id}, control.HomeAssistant{Prefix: haPrefix}, "")
	if len(msgs) == 0 {
		return id
	}
	parts := strings.Split(strings.TrimPrefix(msgs[0].Topic, haPrefix+"/"), "/")
	if len(parts) != 4 {
		return id
	}
	return parts[1]
}

// covers reports whether every topic filter can match is also matched by
// pattern (both MQTT filters).
func covers(pattern, filter string) bool {
	p := strings.Split(pattern, "/")
	f := strings.Split(filter, "/")
	for i, pl := range p {
		if pl == "#" {
			// "a/#" matches "a" and everything under it. A filter starting with
			// a wildcard never matches $-topics, but the pattern needs no care
			// there: a "#" pattern covers more, not less.
			return i == len(p)-1 && len(f) >= i
		}
		if i >= len(f) {
			return false
		}
		fl := f[i]
		switch {
		case fl == "#":
			return false // the filter reaches deeper than a non-# pattern level
		case pl == "+":
			// any level, the filter's "+" included
		case fl == "+":
			return false // pattern is literal, filter matches any level
		case pl != fl:
			return false
		}
	}
	return len(f) == len(p)
}

// haPayloadOK checks a device's Home Assistant discovery payload: every topic
// it names must be one of the device's own, so a device cannot make Home
// Assistant send its buttons' commands to another device (or anything else
// on the broker). An empty payload (removing the entity) is fine.
func haPayloadOK(payload []byte, own []string) bool {
	if len(payload) == 0 {
		return true
	}
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		return false
	}
	return topicsOK(v, own)
}

func topicsOK(v any, own []string) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "~" {
				return false // the topic abbreviation base: the agent never uses it
			}
			if isTopicKey(k) {
				s, ok := x.(string)
				if !ok || !slices.Contains(own, s) {
					return false
				}
				continue
			}
			if !topicsOK(x, own) {
				return false
			}
		}
	case []any:
		for _, x := range v {
			if !topicsOK(x, own) {
				return false
			}
		}
	}
	return true
}

// isTopicKey reports whether a discovery key names a topic: "topic",
// "…_topic", or an abbreviation "…_t" ("cmd_t", "stat_t", "avty_t").
func isTopicKey(k string) bool {
	return k == "topic" || k == "t" || strings.HasSuffix(k, "_topic") || strings.HasSuffix(k, "_t")
}
