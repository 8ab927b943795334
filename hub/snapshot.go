package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/directory"
	"github.com/camagent/camagent/hub/token"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// GET /api/devices/<id>/snapshot.jpg (docs/mqtt.md, "Snapshots"): the JPEG a device keeps
// retained on <prefix>/<id>/snapshot. The hub holds every device's latest snapshot in memory
// from one subscription to <prefix>/+/snapshot (bounded in size and in total), so a page's
// thumbnails cost the broker nothing; with ?fresh=1 it asks the device for a new one first.

const (
	// snapshotFreshWait bounds ?fresh=1: the command, the device's camera and the picture's
	// way back through the broker.
	snapshotFreshWait = 5 * time.Second
	// snapshotFreshWithin: a snapshot the hub received this recently counts as fresh, so a
	// device gets at most about one snapshot command a second however many people look.
	snapshotFreshWithin = time.Second
	// snapshotsHeld bounds the memory all devices' snapshots take together; beyond it the
	// oldest are dropped (their devices answer 404 until their next snapshot).
	snapshotsHeld = 64 << 20
)

// still is one device's latest snapshot.
type still struct {
	jpeg []byte
	at   time.Time // when the hub received it
	seq  uint64    // arrival order over all devices
}

// snapshotOptions configure a snapshots.
type snapshotOptions struct {
	Broker, Prefix, Username, Password string
	Logger                             *slog.Logger
	// Ask sends device id the snapshot command and returns once it has replied (an error
	// for no reply or a refusal).
	Ask func(ctx context.Context, id string) error
	// MaxHeld bounds the bytes held (default snapshotsHeld); FreshWait bounds a fresh
	// request (default snapshotFreshWait).
	MaxHeld   int
	FreshWait time.Duration
}

// snapshots keeps the latest snapshot of every device and runs fresh requests: at most one
// snapshot command in flight per device, shared by everyone asking meanwhile.
type snapshots struct {
	opts snapshotOptions
	log  *slog.Logger

	mu      sync.Mutex
	byID    map[string]*still
	held    int
	seq     uint64
	changed chan struct{} // closed and replaced when a snapshot arrives
	calls   map[string]*freshCall
	refused int
	ctx     context.Context // Run's: fresh calls end with it
	wg      sync.WaitGroup  // fresh calls
}

// freshCall is a snapshot command in flight; done is closed when err is set.
type freshCall struct {
	done chan struct{}
	err  error
}

func newSnapshots(o snapshotOptions) *snapshots {
	if o.Prefix == "" {
		o.Prefix = "camagent"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxHeld <= 0 {
		o.MaxHeld = snapshotsHeld
	}
	if o.FreshWait <= 0 {
		o.FreshWait = snapshotFreshWait
	}
	return &snapshots{opts: o, log: o.Logger.With("component", "snapshot"), byID: map[string]*still{},
		changed: make(chan struct{}), calls: map[string]*freshCall{}, ctx: context.Background()}
}

// Run keeps the subscription until ctx ends, then waits for the fresh calls under way.
func (s *snapshots) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	filter := control.Topics{Prefix: s.opts.Prefix, ID: "+"}.Snapshot()
	co := mqtt.NewClientOptions()
	for _, b := range control.BrokerURLs(s.opts.Broker) {
		co.AddBroker(b)
	}
	co.SetClientID("camhub-snapshots-" + randomSecret()[:8]).
		SetUsername(s.opts.Username).SetPassword(s.opts.Password).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(10 * time.Second)
	co.SetOnConnectHandler(func(c mqtt.Client) {
		// Every (re)subscription brings each device's retained snapshot again. QoS 0, as
		// the directory's subscriptions (hub/directory).
		directory.Subscribe(ctx, c, map[string]byte{filter: 0}, func(_ mqtt.Client, m mqtt.Message) { s.receive(m.Topic(), m.Payload()) }, s.log)
	})
	co.SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.log.Warn("lost broker connection", "err", err) })
	c := mqtt.NewClient(co)
	c.Connect() // retries in the background
	<-ctx.Done()
	c.Disconnect(250)
	s.wg.Wait()
}

// receive takes a message of <prefix>/<id>/snapshot: a JPEG replaces the device's snapshot,
// an empty payload (privacy mode, a retired device) removes it, anything else is refused
// and removes it too (what the broker keeps is no longer a picture).
func (s *snapshots) receive(topic string, payload []byte) {
	rest, _ := strings.CutPrefix(topic, s.opts.Prefix+"/")
	id, _, _ := strings.Cut(rest, "/")
	if !auth.ValidName(id) || topic != (control.Topics{Prefix: s.opts.Prefix, ID: id}).Snapshot() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(id)
	switch {
	case len(payload) == 0:
		return
	case len(payload) > control.MaxSnapshotSize:
		s.refuse("snapshot too large", "device", id, "bytes", len(payload), "max", control.MaxSnapshotSize)
		return
	case len(payload) < 4 || payload[0] != 0xff || payload[1] != 0xd8 || payload[2] != 0xff:
		s.refuse("snapshot is not a JPEG", "device", id, "bytes", len(payload))
		return
	}
	for s.held+len(payload) > s.opts.MaxHeld && len(s.byID) > 0 {
		s.dropOldest()
	}
	s.seq++
	s.byID[id] = &still{jpeg: append([]byte(nil), payload...), at: time.Now(), seq: s.seq}
	s.held += len(payload)
	close(s.changed)
	s.changed = make(chan struct{})
}

// drop forgets id's snapshot (s.mu held).
func (s *snapshots) drop(id string) {
	if old := s.byID[id]; old != nil {
		s.held -= len(old.jpeg)
		delete(s.byID, id)
	}
}

// dropOldest forgets the snapshot received longest ago (s.mu held).
func (s *snapshots) dropOldest() {
	var oldest string
	for id, st := range s.byID {
		if oldest == "" || st.seq < s.byID[oldest].seq {
			oldest = id
		}
	}
	s.log.Info("dropping the oldest snapshot: the hub holds its maximum", "device", oldest, "maxBytes", s.opts.MaxHeld)
	s.drop(oldest)
}

// refuse counts a refused message; logs the first few and every thousandth (s.mu held).
func (s *snapshots) refuse(msg string, attrs ...any) {
	s.refused++
	if s.refused <= 10 || s.refused%1000 == 0 {
		s.log.Warn(msg, append(attrs, "refusedTotal", s.refused)...)
	}
}

// latest returns id's snapshot, if the hub has one.
func (s *snapshots) latest(id string) (still, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.byID[id]; st != nil {
		return *st, true
	}
	return still{}, false
}

// fresh returns a snapshot of id received at most snapshotFreshWithin before the call,
// asking the device for one if there is none; everyone asking while a command is in flight
// waits for that one.
func (s *snapshots) fresh(ctx context.Context, id string) (still, error) {
	start := time.Now()
	s.mu.Lock()
	if st := s.byID[id]; st != nil && start.Sub(st.at) <= snapshotFreshWithin {
		s.mu.Unlock()
		return *st, nil
	}
	c := s.calls[id]
	if c == nil {
		c = &freshCall{done: make(chan struct{})}
		s.calls[id] = c
		s.wg.Add(1)
		go s.run(s.ctx, id, c, s.seq)
	}
	s.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		return still{}, ctx.Err()
	}
	if c.err != nil {
		return still{}, c.err
	}
	if st, ok := s.latest(id); ok {
		return st, nil
	}
	// Cleared between its arrival and now (privacy mode turned on).
	return still{}, errNoSnapshot
}

func (e *apiError) Error() string { return e.message }

var errNoSnapshot = &apiError{http.StatusNotFound, "NO_SNAPSHOT", "the device has no snapshot"}

// run is one fresh call: the command, then the wait for a snapshot newer than seq.
func (s *snapshots) run(ctx context.Context, id string, c *freshCall, seq uint64) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(ctx, s.opts.FreshWait)
	defer cancel()
	err := s.opts.Ask(ctx, id)
	for err == nil {
		s.mu.Lock()
		st, changed := s.byID[id], s.changed
		s.mu.Unlock()
		if st != nil && st.seq > seq {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			err = &apiError{http.StatusGatewayTimeout, "NO_SNAPSHOT", fmt.Sprintf("device %s answered, but its snapshot did not reach the hub within %s", id, s.opts.FreshWait)}
		}
	}
	s.mu.Lock()
	c.err = err
	delete(s.calls, id)
	s.mu.Unlock()
	close(c.done)
}

// askSnapshot sends device id the snapshot command through the directory (snapshots' Ask).
func (h *Hub) askSnapshot(ctx context.Context, id string) error {
	wait := snapshotFreshWait
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	reply, err := h.dir.Command(ctx, id, map[string]any{"action": control.ActionSnapshot}, wait)
	switch {
	case errors.Is(err, directory.ErrNoReply), errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusGatewayTimeout, "NO_REPLY", fmt.Sprintf("device %s did not answer the snapshot command within %s", id, snapshotFreshWait)}
	case err != nil:
		return &apiError{http.StatusBadGateway, "MQTT", err.Error()}
	}
	var rep struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if json.Unmarshal(reply, &rep) != nil || !rep.OK {
		return &apiError{http.StatusConflict, "DEVICE_REFUSED", "device " + id + " made no snapshot: " + rep.Error}
	}
	return nil
}

// snapshotViewer authenticates a snapshot request for device id: a principal that may view
// it (session, key, also as a Basic password, demo trust), or Authorization: Bearer with a
// channel token of the device's view channel that grants subscribe (what /watch gives a
// viewer).
func (h *Hub) snapshotViewer(r *http.Request, id string) (*auth.Principal, *apiError) {
	r = basicKey(r) // Home Assistant's generic camera: the key as a Basic password (basickey.go)
	text, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	text = strings.TrimSpace(text)
	if bearer && !strings.HasPrefix(text, "cam_") {
		claims, err := token.Parse(text, h.verifyCertificate)
		if err == nil {
			err = claims.Check(h.cfg.Apps[0].ID, claims.Channel, claims.UID, token.PrivSubscribe, time.Now())
		}
		if err != nil {
			h.noise("auth", r, "why", err.Error())
			return nil, &apiError{http.StatusUnauthorized, "UNAUTHORIZED", "refused token: " + strings.TrimPrefix(err.Error(), "token: ")}
		}
		if !auth.ValidName(id) {
			return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMS", "bad device id"}
		}
		if claims.Channel != ViewChannel(id) {
			h.noise("forbidden", r, "device", id, "channel", quoteTrunc(claims.Channel), "action", "snapshot")
			return nil, &apiError{http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("a token for channel %q does not show device %s (only one for %q does)",
				claims.Channel, id, ViewChannel(id))}
		}
		return &auth.Principal{Kind: "token", Name: "uid " + strconv.FormatUint(uint64(claims.UID), 10), CredID: claims.KeyID}, nil
	}
	p, e := h.principal(r)
	if e != nil {
		if e == errUnauthorized {
			h.noise("unauthenticated", r)
		}
		return nil, e
	}
	if !auth.ValidName(id) {
		return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMS", "bad device id"}
	}
	if !p.Can(id, auth.PermView) {
		h.noise("forbidden", r, "principal", p.String(), "device", id, "action", "snapshot")
		return nil, &apiError{http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("%s may not view device %s", p.Kind+" "+p.Name, id)}
	}
	return p, nil
}

// handleSnapshot is GET /api/devices/{id}/snapshot.jpg[?fresh=1].
func (h *Hub) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, e := h.snapshotViewer(r, id)
	if e != nil {
		e.write(w)
		return
	}
	var st still
	switch f := r.URL.Query().Get("fresh"); f {
	case "", "0", "false":
		var ok bool
		if st, ok = h.snaps.latest(id); !ok {
			errNoSnapshot.write(w)
			return
		}
	case "1", "true":
		if !h.deviceOnline(id) {
			writeError(w, http.StatusServiceUnavailable, "DEVICE_OFFLINE", "device "+id+" is not online: no fresh snapshot")
			return
		}
		h.audit(r, p, id, control.ActionSnapshot, "via", "snapshot.jpg")
		var err error
		if st, err = h.snaps.fresh(r.Context(), id); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				ae.write(w)
			}
			return // else the request ended
		}
	default:
		writeError(w, http.StatusBadRequest, "INVALID_PARAMS", "fresh must be 1 or 0, not "+quoteTrunc(f))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "image/jpeg")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Length", strconv.Itoa(len(st.jpeg)))
	hd.Set("Last-Modified", st.at.UTC().Format(http.TimeFormat))
	w.Write(st.jpeg)
}

// deviceOnline reports whether the directory has device id online.
func (h *Hub) deviceOnline(id string) bool {
	for _, d := range h.dir.Devices() {
		if d.ID == id {
			return d.Status == "online"
		}
	}
	return false
}
