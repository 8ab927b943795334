// Package directory keeps the hub's list of devices from their MQTT status and state topics,
// and sends them commands the same way any MQTT client would (camagent/<id>/cmd → reply).
//
// It is an ordinary client of the fixed MQTT API (docs/mqtt.md): it subscribes to
// <prefix>/+/status, <prefix>/+/state and <prefix>/+/reply and publishes to <prefix>/<id>/cmd.
package directory

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/control"
)

// Device is one entry of the directory.
type Device struct {
	ID     string          `json:"id"`
	Status string          `json:"status"` // online | offline | unknown
	State  json.RawMessage `json:"state,omitempty"`
	Seen   time.Time       `json:"seen"`
}

// Options configure a Directory.
type Options struct {
	Broker   string // tcp://127.0.0.1:1883; several, comma-separated, fail over in order
	Prefix   string // camagent
	ClientID string
	Username string
	Password string
	// TLS is used for ssl://, tls:// and wss:// brokers (see control.TLSFiles
	// to build it from files); nil uses the system roots.
	TLS    *tls.Config
	Logger *slog.Logger
	// MaxDevices bounds the directory (default 10000): a client that may publish states
	// cannot grow the hub without end. Entries beyond it are refused and counted.
	MaxDevices int
	// MaxState bounds a state message (default 16 KiB); larger ones are ignored.
	MaxState int
	// OfflineTTL drops a device offline for longer than this (default 7 days).
	OfflineTTL time.Duration
}

// Directory is the device list plus a command channel to each device.
type Directory struct {
	opts   Options
	log    *slog.Logger
	client mqtt.Client

	mu      sync.Mutex
	devices map[string]*Device
	waiting map[string]waiter // request id → who answers, and where
	refused int               // states and statuses refused by the limits
}

// waiter is a command waiting for its reply: only the commanded device's reply topic may
// answer it.
type waiter struct {
	device string
	ch     chan json.RawMessage
}

// New returns a Directory; Run connects it.
func New(o Options) *Directory {
	if o.Prefix == "" {
		o.Prefix = "camagent"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ClientID == "" {
		o.ClientID = "camhub-" + randomHex(4)
	}
	if o.MaxDevices <= 0 {
		o.MaxDevices = 10000
	}
	if o.MaxState <= 0 {
		o.MaxState = 16 << 10
	}
	if o.OfflineTTL <= 0 {
		o.OfflineTTL = 7 * 24 * time.Hour
	}
	return &Directory{opts: o, log: o.Logger.With("component", "directory"),
		devices: map[string]*Device{}, waiting: map[string]waiter{}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Run connects to the broker and keeps the directory current until ctx ends.
func (d *Directory) Run(ctx context.Context) error {
	co := mqtt.NewClientOptions()
	for _, b := range control.BrokerURLs(d.opts.Broker) { // the nodes of a cluster, in order
		co.AddBroker(b)
	}
	co.SetClientID(d.opts.ClientID).
		SetUsername(d.opts.Username).SetPassword(d.opts.Password).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).SetCleanSession(true).
		// In order: a device's "leaving" handled after its "idle" would stick. onMessage never
		// blocks (a reply goes to a buffered channel), so paho's one router goroutine is enough.
		SetOrderMatters(true)
	if d.opts.TLS != nil {
		co.SetTLSConfig(d.opts.TLS)
	}
	co.SetOnConnectHandler(func(c mqtt.Client) {
		d.log.Info("connected to broker", "broker", d.opts.Broker)
		// QoS 0, as the hub's commands: the session is clean, so QoS 1 would add only
		// acknowledgements, while a NATS cluster serves a QoS 1 subscription through a
		// JetStream consumer that stalls for seconds when the node leading it dies
		// (docs/nats.md). Retained statuses and states come at subscription either way.
		filters := map[string]byte{
			d.opts.Prefix + "/+/status": 0,
			d.opts.Prefix + "/+/state":  0,
			d.opts.Prefix + "/+/reply":  0,
		}
		Subscribe(ctx, c, filters, d.onMessage, d.log)
	})
	co.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		d.log.Warn("lost broker connection", "err", err)
	})
	d.client = mqtt.NewClient(co)
	d.client.Connect() // retries in the background until connected
	<-ctx.Done()
	d.client.Disconnect(250)
	return nil
}

func (d *Directory) onMessage(_ mqtt.Client, m mqtt.Message) {
	parts := strings.Split(m.Topic(), "/")
	if len(parts) != strings.Count(d.opts.Prefix, "/")+3 {
		return
	}
	id, kind := parts[len(parts)-2], parts[len(parts)-1]
	payload := m.Payload()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch kind {
	case "reply":
		var r struct {
			ID string `json:"id"`
		}
		if len(payload) <= d.opts.MaxState && json.Unmarshal(payload, &r) == nil {
			// Only the commanded device answers: a reply on another device's topic is not
			// taken for this one's (the broker's ACLs stop a device writing another's topic).
			if w, ok := d.waiting[r.ID]; ok && w.device == id {
				w.ch <- append(json.RawMessage(nil), payload...)
				delete(d.waiting, r.ID)
			}
		}
		return
	case "status", "state":
	default:
		return
	}
	dev := d.devices[id]
	if dev == nil {
		if len(payload) == 0 {
			return // a cleared retained message for a device we never knew
		}
		d.expire()
		if len(d.devices) >= d.opts.MaxDevices {
			d.refuse("directory full", "device", id, "max", d.opts.MaxDevices)
			return
		}
		dev = &Device{ID: id, Status: "unknown"}
		d.devices[id] = dev
	}
	if len(payload) == 0 && kind == "status" {
		delete(d.devices, id) // the retained status was cleared: the device is gone
		return
	}
	dev.Seen = time.Now()
	if kind == "status" {
		st := strings.TrimSpace(string(payload))
		if st != "online" && st != "offline" {
			d.refuse("status is neither online nor offline", "device", id)
			return
		}
		dev.Status = st
	} else if len(payload) > d.opts.MaxState {
		d.refuse("state too large", "device", id, "bytes", len(payload), "max", d.opts.MaxState)
	} else if json.Valid(payload) {
		dev.State = append(json.RawMessage(nil), payload...)
	}
}

// refuse counts a message the limits refused; logs the first few and every thousandth.
func (d *Directory) refuse(msg string, attrs ...any) {
	d.refused++
	if d.refused <= 10 || d.refused%1000 == 0 {
		d.log.Warn(msg, append(attrs, "refusedTotal", d.refused)...)
	}
}

// expire drops devices offline for longer than OfflineTTL (d.mu held).
func (d *Directory) expire() {
	now := time.Now()
	for id, dev := range d.devices {
		if dev.Status != "online" && now.Sub(dev.Seen) > d.opts.OfflineTTL {
			delete(d.devices, id)
		}
	}
}

// Refused is the number of states and statuses refused by the limits.
func (d *Directory) Refused() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refused
}

// Devices returns the directory sorted by id.
func (d *Directory) Devices() []Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire()
	out := make([]Device, 0, len(d.devices))
	for _, dev := range d.devices {
		out = append(out, *dev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ErrNoReply is returned when a device does not answer a command in time.
var ErrNoReply = errors.New("directory: device did not reply")

// Command sends cmd (a JSON object; its "id" is set here) to device id and returns the reply.
func (d *Directory) Command(ctx context.Context, id string, cmd map[string]any, timeout time.Duration) (json.RawMessage, error) {
	if d.client == nil || !d.client.IsConnectionOpen() {
		return nil, errors.New("directory: not connected to the MQTT broker")
	}
	reqID := "hub-" + randomHex(6)
	cmd["id"] = reqID
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("directory: encode command: %w", err)
	}
	ch := make(chan json.RawMessage, 1)
	d.mu.Lock()
	d.waiting[reqID] = waiter{device: id, ch: ch}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiting, reqID)
		d.mu.Unlock()
	}()
	// QoS 0: delivered to a connected device at once. The broker does not queue it for a
	// device that is away (even with a persistent session), which is right here: this
	// call has answered "no reply" by the time the device could run it. On a NATS cluster a
	// QoS 1 publish is stored in JetStream too, and while the node leading that stream is
	// dead the hub's connection would be held 4 s and closed (docs/nats.md).
	tok := d.client.Publish(d.opts.Prefix+"/"+id+"/cmd", 0, false, payload)
	if !tok.WaitTimeout(timeout) || tok.Error() != nil {
		return nil, fmt.Errorf("directory: publish command to %s: %v", id, tok.Error())
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-timer.C:
		return nil, ErrNoReply
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
