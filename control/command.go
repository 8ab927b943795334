package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Actions a Command may carry.
const (
	ActionJoin   = "join"
	ActionLeave  = "leave"
	ActionStatus = "status"
	// ActionSnapshot publishes a JPEG of the current picture, retained, on the
	// device's snapshot topic; the reply carries its size (Reply.Snapshot).
	ActionSnapshot = "snapshot"
	// ActionPrivacy turns privacy mode on or off (Command.On): on, the camera
	// and microphone are closed and joins are refused, across restarts.
	ActionPrivacy = "privacy"
)

// States a device reports.
const (
	StateIdle    = "idle"
	StateJoining = "joining"
	StateJoined  = "joined"
	StateLeaving = "leaving"
	StateError   = "error"
)

// Events a device reports.
const (
	EventUserJoined      = "user-joined"
	EventUserLeft        = "user-left"
	EventUserPublished   = "user-published"
	EventUserUnpublished = "user-unpublished"
	EventTokenWillExpire = "token-will-expire"
	EventError           = "error"
	EventStats           = "stats"
)

// Limits on commands, checked by ParseCommand.
const (
	MaxCommandSize = 16 << 10 // bytes of JSON
	MaxIDLen       = 128      // bytes
	MaxChannelLen  = 64       // bytes
	// MinSnapshotWidth and MaxSnapshotWidth bound a snapshot's "maxWidth".
	MinSnapshotWidth = 16
	MaxSnapshotWidth = 7680
)

// Command is a request sent to a device on its cmd topic.
type Command struct {
	ID      string  `json:"id"`
	Action  string  `json:"action"` // join | leave | status | snapshot | privacy
	Channel string  `json:"channel,omitempty"`
	UID     *uint32 `json:"uid,omitempty"`
	Token   string  `json:"token,omitempty"`
	AppID   string  `json:"appId,omitempty"`
	Server  string  `json:"server,omitempty"`
	// MaxWidth bounds a snapshot's width in pixels (the picture is scaled
	// down, keeping its aspect ratio); nil: the camera's own width.
	MaxWidth *int `json:"maxWidth,omitempty"`
	// On is privacy's wanted mode; required by privacy.
	On *bool `json:"on,omitempty"`
	// Secret is the device's shared command secret, when it has one
	// (Options.Secret).
	Secret string `json:"secret,omitempty"`
}

// State is what a device is doing, published retained on its state topic.
type State struct {
	State   string    `json:"state"` // idle|joining|joined|leaving|error
	Channel string    `json:"channel,omitempty"`
	UID     uint32    `json:"uid,omitempty"`
	Users   []uint32  `json:"users"`
	Since   time.Time `json:"since"`
	Error   string    `json:"error,omitempty"`
	// Privacy is true while privacy mode is on (camera and microphone closed,
	// joins refused); always present.
	Privacy bool `json:"privacy"`
}

// MarshalJSON writes Users as [] rather than null when it is empty.
func (s State) MarshalJSON() ([]byte, error) {
	type plain State // without this method
	if s.Users == nil {
		s.Users = []uint32{}
	}
	return json.Marshal(plain(s))
}

// Reply answers one Command on the reply topic.
type Reply struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	State *State `json:"state,omitempty"`
	// Snapshot describes the JPEG a snapshot command published.
	Snapshot *SnapshotInfo `json:"snapshot,omitempty"`
}

// SnapshotInfo describes a published snapshot: its size in bytes and
// pixels, when its picture was captured, and the topic it is on.
type SnapshotInfo struct {
	Bytes       int       `json:"bytes"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	CaptureTime time.Time `json:"captureTime"`
	Topic       string    `json:"topic"`
}

// Event is something that happened on the device, published on its events
// topic.
type Event struct {
	Event   string    `json:"event"`
	UID     uint32    `json:"uid,omitempty"`
	Kind    string    `json:"kind,omitempty"` // audio | video, for (un)published
	Channel string    `json:"channel,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Error   string    `json:"error,omitempty"`
	*Stats            // the figures of a "stats" event
	Time    time.Time `json:"time"`
}

// Stats are a call's figures over the last interval, carried (flattened) by
// a "stats" event. Rates are over the interval; loss and RTT come from the
// receiver reports and ICE checks of the device's publishing connection.
type Stats struct {
	Interval     float64 `json:"intervalSeconds"` // seconds these figures cover
	Users        int     `json:"users"`           // other users in the channel
	VideoBitrate int64   `json:"videoBitrate"`    // bit/s sent (RTP headers and payload)
	AudioBitrate int64   `json:"audioBitrate"`    // bit/s sent
	FPS          float64 `json:"fps"`             // video frames sent per second
	PacketsSent  uint64  `json:"packetsSent"`     // RTP packets sent in the interval, all tracks
	PacketsLost  int64   `json:"packetsLost"`     // lost in the interval, as the hub reports
	LossFraction float64 `json:"lossFraction"`    // 0–1, the latest receiver report's fraction lost
	RTT          float64 `json:"rttMs"`           // round-trip time to the hub, ms
}

// ParseCommand decodes and validates a command payload. It is strict about
// types (a number where a string belongs is an error naming the field) and
// ignores unknown fields; field names are matched exactly. The error text is
// meant for the reply. On error the returned Command still carries the ID when
// it could be read, so that the reply can name it.
func ParseCommand(payload []byte) (Command, error) {
	if len(payload) > MaxCommandSize {
		return Command{}, errTooLarge(len(payload))
	}
	return parseCommand(payload)
}

// errTooLarge is the refusal of a payload of n bytes, over MaxCommandSize.
func errTooLarge(n int) error {
	return fmt.Errorf("command is %d bytes, more than the %d allowed", n, MaxCommandSize)
}

// parseCommand is ParseCommand without the size limit.
func parseCommand(payload []byte) (Command, error) {
	var cmd Command
	if !utf8.Valid(payload) {
		return cmd, errors.New("command is not valid UTF-8")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return cmd, fmt.Errorf("command must be a JSON object, not %s", kindOf(payload))
		case errors.As(err, &syntaxErr):
			return cmd, fmt.Errorf("invalid JSON at byte %d: %v", syntaxErr.Offset, err)
		default:
			return cmd, fmt.Errorf("invalid JSON: %v", err)
		}
	}
	if fields == nil {
		return cmd, errors.New("command must be a JSON object, not null")
	}

	// The id first, so that later errors can be answered with it.
	if err := stringField(fields, "id", &cmd.ID); err != nil {
		return cmd, err
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"action", &cmd.Action},
		{"channel", &cmd.Channel},
		{"token", &cmd.Token},
		{"appId", &cmd.AppID},
		{"server", &cmd.Server},
		{"secret", &cmd.Secret},
	} {
		if err := stringField(fields, f.name, f.dst); err != nil {
			return cmd, err
		}
	}
	if err := uidField(fields, &cmd.UID); err != nil {
		return cmd, err
	}
	if err := widthField(fields, &cmd.MaxWidth); err != nil {
		return cmd, err
	}
	if err := boolField(fields, "on", &cmd.On); err != nil {
		return cmd, err
	}
	return cmd, cmd.validate()
}

// validate checks the values of a decoded command.
func (c Command) validate() error {
	if len(c.ID) > MaxIDLen {
		return fmt.Errorf(`"id" is %d bytes, more than the %d allowed`, len(c.ID), MaxIDLen)
	}
	switch c.Action {
	case "":
		return errors.New(`missing "action" (` + actionList + `)`)
	case ActionJoin:
		if c.Channel == "" {
			return errors.New(`join needs a "channel"`)
		}
		if len(c.Channel) > MaxChannelLen {
			return fmt.Errorf(`"channel" is %d bytes, more than the %d allowed`, len(c.Channel), MaxChannelLen)
		}
		for i, r := range c.Channel {
			if !unicode.IsPrint(r) {
				return fmt.Errorf(`"channel" has a non-printable character %U at byte %d`, r, i)
			}
		}
	case ActionPrivacy:
		if c.On == nil {
			return errors.New(`privacy needs "on": true or false`)
		}
	case ActionLeave, ActionStatus, ActionSnapshot:
	default:
		return fmt.Errorf(`unknown action %s (want %s)`, quoteShort(c.Action), actionList)
	}
	return nil
}

// actionList names the actions for error messages.
const actionList = "join, leave, status, snapshot or privacy"

// stringField decodes fields[name] into dst if it is present and not null.
func stringField(fields map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	if k := kindOf(raw); k != "a string" {
		return fmt.Errorf("field %q must be a string, not %s", name, k)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("field %q: %v", name, err)
	}
	return nil
}

// uidField decodes fields["uid"], an unsigned 32-bit integer, if it is
// present and not null.
func uidField(fields map[string]json.RawMessage, dst **uint32) error {
	raw, ok := fields["uid"]
	if !ok || isNull(raw) {
		return nil
	}
	if k := kindOf(raw); k != "a number" {
		return fmt.Errorf(`field "uid" must be a number, not %s`, k)
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 32)
	if err != nil {
		return fmt.Errorf(`field "uid" must be an integer from 0 to 4294967295, not %s`, quoteShort(string(raw)))
	}
	u := uint32(n)
	*dst = &u
	return nil
}

// widthField decodes fields["maxWidth"], an integer from MinSnapshotWidth
// to MaxSnapshotWidth, if it is present and not null.
func widthField(fields map[string]json.RawMessage, dst **int) error {
	raw, ok := fields["maxWidth"]
	if !ok || isNull(raw) {
		return nil
	}
	if k := kindOf(raw); k != "a number" {
		return fmt.Errorf(`field "maxWidth" must be a number, not %s`, k)
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil || n < MinSnapshotWidth || n > MaxSnapshotWidth {
		return fmt.Errorf(`field "maxWidth" must be an integer from %d to %d, not %s`, MinSnapshotWidth, MaxSnapshotWidth, quoteShort(string(raw)))
	}
	*dst = &n
	return nil
}

// boolField decodes fields[name], a JSON boolean, if it is present and not
// null.
func boolField(fields map[string]json.RawMessage, name string, dst **bool) error {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	var b bool
	if k := kindOf(raw); k != "a boolean" || json.Unmarshal(raw, &b) != nil {
		return fmt.Errorf("field %q must be true or false, not %s", name, quoteShort(string(raw)))
	}
	*dst = &b
	return nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// kindOf names the kind of a JSON value from its first byte.
func kindOf(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 40
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}
