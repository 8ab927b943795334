package control

import (
	"encoding/json"
	"strings"
)

// HomeAssistant turns on Home Assistant MQTT discovery: on every connect
// the device publishes, retained, one discovery message per entity under
// <Prefix>/<component>/<node>/<object>/config. The entities read the
// device's own topics (status, state) and send ordinary commands on its cmd
// topic, so Home Assistant uses the same fixed API as any other client.
// Docs: https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
type HomeAssistant struct {
	// Prefix is Home Assistant's discovery prefix, "homeassistant" by
	// default in Home Assistant; empty turns discovery off.
	Prefix string
	// Name is the device's name in Home Assistant; default the device id.
	Name string
	// DefaultChannel is the channel the "Call" switch and the "Join" button
	// join. Without it those two entities are not announced.
	DefaultChannel string
	// Model and SWVersion fill the device block.
	Model     string
	SWVersion string
}

// Discovery is one Home Assistant discovery message.
type Discovery struct {
	Topic   string
	Payload []byte
}

// HANode is the node id of a device's Home Assistant discovery topics
// (<prefix>/<component>/<node>/<object>/config): the broker's ACLs use it.
func HANode(id string) string { return haNode(id) }

// haNode makes a device id usable as a discovery node id and in unique ids
// ([a-zA-Z0-9_-] only).
func haNode(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, id)
}

// haSlug makes s an entity id's object part: lower case, [a-z0-9_] only.
func haSlug(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// DiscoveryMessages returns the discovery messages for a device with the
// given topics; secret, when set, is put into the commands the entities
// send. It returns nil when ha.Prefix is empty.
func DiscoveryMessages(tp Topics, ha HomeAssistant, secret string) []Discovery {
	if ha.Prefix == "" {
		return nil
	}
	node := haNode(tp.ID)
	name := ha.Name
	if name == "" {
		name = tp.ID
	}
	model := ha.Model
	if model == "" {
		model = "camagent device agent"
	}
	device := map[string]any{
		"identifiers":  []string{"camagent_" + node},
		"name":         name,
		"manufacturer": "camagent",
		"model":        model,
	}
	if ha.SWVersion != "" {
		device["sw_version"] = ha.SWVersion
	}
	origin := map[string]any{"name": "camagent"}
	if ha.SWVersion != "" {
		origin["sw_version"] = ha.SWVersion
	}
	command := func(fields ...any) string {
		m := map[string]any{}
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1]
		}
		if secret != "" {
			m["secret"] = secret
		}
		b, _ := json.Marshal(m) // keys sorted: a stable payload
		return string(b)
	}

	type entity struct {
		component, object string
		fields            map[string]any
	}
	var ents []entity
	if ha.DefaultChannel != "" {
		join := command("action", ActionJoin, "channel", ha.DefaultChannel)
		leave := command("action", ActionLeave)
		ents = append(ents,
			entity{"switch", "call", map[string]any{
				"name":           "Call",
				"icon":           "mdi:video",
				"command_topic":  tp.Cmd(),
				"payload_on":     join,
				"payload_off":    leave,
				"state_topic":    tp.State(),
				"value_template": "{{ 'ON' if value_json.state in ['joining', 'joined'] else 'OFF' }}",
				"state_on":       "ON",
				"state_off":      "OFF",
				"qos":            1,
				"retain":         false,
			}},
			entity{"button", "join", map[string]any{
				"name":          "Join " + ha.DefaultChannel,
				"icon":          "mdi:phone",
				"command_topic": tp.Cmd(),
				"payload_press": join,
				"qos":           1,
				"retain":        false,
			}},
		)
	}
	ents = append(ents,
		entity{"button", "leave", map[string]any{
			"name":          "Leave",
			"icon":          "mdi:phone-hangup",
			"command_topic": tp.Cmd(),
			"payload_press": command("action", ActionLeave),
			"qos":           1,
			"retain":        false,
		}},
		// The picture: an MQTT camera shows whatever JPEG is retained on the snapshot
		// topic; the button takes a new one (the topic is cleared in privacy mode).
		entity{"camera", "camera", map[string]any{
			"name":  "Snapshot",
			"icon":  "mdi:cctv",
			"topic": tp.Snapshot(),
		}},
		entity{"button", "take_snapshot", map[string]any{
			"name":          "Take snapshot",
			"icon":          "mdi:camera",
			"command_topic": tp.Cmd(),
			"payload_press": command("action", ActionSnapshot),
			"qos":           1,
			"retain":        false,
		}},
		entity{"switch", "privacy", map[string]any{
			"name":           "Privacy mode",
			"icon":           "mdi:eye-off",
			"command_topic":  tp.Cmd(),
			"payload_on":     command("action", ActionPrivacy, "on", true),
			"payload_off":    command("action", ActionPrivacy, "on", false),
			"state_topic":    tp.State(),
			"value_template": "{{ 'ON' if value_json.privacy else 'OFF' }}",
			"state_on":       "ON",
			"state_off":      "OFF",
			"qos":            1,
			"retain":         false,
		}},
		entity{"sensor", "state", map[string]any{
			"name":                  "State",
			"icon":                  "mdi:state-machine",
			"state_topic":           tp.State(),
			"value_template":        "{{ value_json.state }}",
			"device_class":          "enum",
			"options":               []string{StateIdle, StateJoining, StateJoined, StateLeaving, StateError},
			"json_attributes_topic": tp.State(),
		}},
		entity{"sensor", "channel", map[string]any{
			"name":           "Channel",
			"icon":           "mdi:forum",
			"state_topic":    tp.State(),
			"value_template": "{{ value_json.channel | default('') }}",
		}},
		entity{"sensor", "users", map[string]any{
			"name":                "Remote users",
			"icon":                "mdi:account-multiple",
			"state_topic":         tp.State(),
			"value_template":      "{{ value_json.users | length }}",
			"state_class":         "measurement",
			"unit_of_measurement": "users",
		}},
		entity{"binary_sensor", "connectivity", map[string]any{
			"name":            "MQTT connection",
			"state_topic":     tp.Status(),
			"payload_on":      "online",
			"payload_off":     "offline",
			"device_class":    "connectivity",
			"entity_category": "diagnostic",
		}},
		entity{"sensor", "since", map[string]any{
			"name":            "State since",
			"state_topic":     tp.State(),
			"value_template":  "{{ value_json.since }}",
			"device_class":    "timestamp",
			"entity_category": "diagnostic",
		}},
		entity{"sensor", "error", map[string]any{
			"name":            "Last error",
			"icon":            "mdi:alert-circle-outline",
			"state_topic":     tp.State(),
			"value_template":  "{{ value_json.error | default('') }}",
			"entity_category": "diagnostic",
		}},
	)

	out := make([]Discovery, 0, len(ents))
	for _, e := range ents {
		f := e.fields
		f["unique_id"] = "camagent_" + node + "_" + e.object
		f["default_entity_id"] = e.component + "." + haSlug("camagent_"+node+"_"+e.object)
		f["device"] = device
		f["origin"] = origin
		// The connectivity sensor must stay available to show "offline".
		if e.object != "connectivity" {
			f["availability_topic"] = tp.Status()
			f["payload_available"] = "online"
			f["payload_not_available"] = "offline"
		}
		b, err := json.Marshal(f)
		if err != nil {
			continue // cannot happen: plain maps of strings and numbers
		}
		out = append(out, Discovery{
			Topic:   ha.Prefix + "/" + e.component + "/" + node + "/" + e.object + "/config",
			Payload: b,
		})
	}
	return out
}
