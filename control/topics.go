package control

// DefaultPrefix is the first level of every topic unless configured.
const DefaultPrefix = "camagent"

// Topics names a device's MQTT topics: <Prefix>/<ID>/status and so on.
type Topics struct {
	Prefix string // "camagent" when empty
	ID     string // the device id
}

func (t Topics) topic(leaf string) string {
	prefix := t.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return prefix + "/" + t.ID + "/" + leaf
}

// Status is the retained online/offline topic (the device's will).
func (t Topics) Status() string { return t.topic("status") }

// State is the retained JSON State topic.
func (t Topics) State() string { return t.topic("state") }

// Cmd is the topic the device receives Commands on.
func (t Topics) Cmd() string { return t.topic("cmd") }

// Reply is the topic the device answers Commands on.
func (t Topics) Reply() string { return t.topic("reply") }

// Events is the topic the device reports Events on.
func (t Topics) Events() string { return t.topic("events") }

// Snapshot is the retained topic of the device's latest snapshot, a JPEG
// (binary payload; empty while privacy mode is on).
func (t Topics) Snapshot() string { return t.topic("snapshot") }
