// Package cluster is the channel directory several hubs share in Redis: which hubs are live
// (each registers its id, public URL and load under a lease it renews), and which hub holds
// each channel (an App's channel is owned by one hub under a lease: SET NX PX, renewed with a
// check-and-set script). A hub asked for a channel held by another live hub sends the client
// there (Place returns that hub's URL); a channel with no owner, or whose owner's lease ran
// out, is placed on the least loaded live hub. When a hub dies its leases expire and its
// channels are placed again at the next join.
//
// Keys (prefix "camhub"): <prefix>:hub:<id> (JSON, PX lease), <prefix>:hubs (a set of ids),
// <prefix>:ch:<app>/<channel> (the owner's id, PX lease), app and channel path-escaped.
// docs/scaling.md describes the design and its failure behaviour.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"sync"
	"time"
)

// Options configure a Directory.
type Options struct {
	// Redis is the server's URL: redis://[user:password@]host:port[/db], rediss:// for TLS.
	Redis string
	// HubID names this hub among the others (unique); PublicURL is the base URL clients
	// reach it at (https://hub2.example:8443): where other hubs send its channels' users.
	HubID, PublicURL string
	// Lease is how long a hub's registration and its channels' ownership last without
	// renewal (3 s); they are renewed every Lease/3. A killed hub's channels move after it.
	Lease time.Duration
	// Prefix starts every key ("camhub").
	Prefix string
	// Load is this hub's current load (its users), published with its registration and
	// compared by placement.
	Load func() int
	// Active reports whether this hub still runs a channel (someone is in it, or keeps a
	// place for a reconnect); a held channel no longer active is released.
	Active func(app, channel string) bool
	// Lost, when set, is told that a channel this hub ran is now held by another hub (its
	// lease ran out while Redis was unreachable and another hub took it): its users should
	// reconnect, to be sent there.
	Lost func(app, channel string)
	// RelayAbove: a channel with this many users on its hub sends its next viewers to relay
	// hubs (PlaceViewer, relay.go); 0: never.
	RelayAbove int
	Logger     *slog.Logger
}

// HubInfo is one live hub as registered.
type HubInfo struct {
	ID       string `json:"id"`
	URL      string `json:"url"`
	Load     int    `json:"load"`
	Instance string `json:"instance"`
}

type chanKey struct{ app, channel string }

// Directory is one hub's view of the shared directory. Run keeps its registration and its
// channels' leases; Place decides where a channel runs.
type Directory struct {
	opts     Options
	log      *slog.Logger
	redis    *conn
	instance string
	ready    chan struct{}

	mu    sync.Mutex
	owned map[chanKey]time.Time // channels held here → when adopted
	hubs  []HubInfo             // live hubs at the last refresh (loads bumped by placements)
}

// New checks the options; Run connects.
func New(o Options) (*Directory, error) {
	if o.HubID == "" || len(o.HubID) > 64 {
		return nil, errors.New("cluster: hubID must be 1-64 characters")
	}
	if u, err := url.Parse(o.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cluster: publicURL %q is not a hub base URL such as https://hub1.example:8443", o.PublicURL)
	}
	if o.Lease <= 0 {
		o.Lease = 3 * time.Second
	}
	if o.Lease < 300*time.Millisecond {
		return nil, fmt.Errorf("cluster: lease %s is under 300ms", o.Lease)
	}
	if o.Prefix == "" {
		o.Prefix = "camhub"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Load == nil {
		o.Load = func() int { return 0 }
	}
	if o.Active == nil {
		o.Active = func(string, string) bool { return true }
	}
	c, err := parseRedisURL(o.Redis, o.Lease/3)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &Directory{opts: o, log: o.Logger.With("component", "cluster", "hub", o.HubID), redis: c,
		instance: hex.EncodeToString(b), ready: make(chan struct{}), owned: map[chanKey]time.Time{}}, nil
}

// Ready is closed once the hub is registered.
func (d *Directory) Ready() <-chan struct{} { return d.ready }

// ID is this hub's id.
func (d *Directory) ID() string { return d.opts.HubID }

func (d *Directory) hubKey(id string) string { return d.opts.Prefix + ":hub:" + id }
func (d *Directory) hubsKey() string         { return d.opts.Prefix + ":hubs" }
func (d *Directory) chanKey(k chanKey) string {
	return d.opts.Prefix + ":ch:" + url.PathEscape(k.app) + "/" + url.PathEscape(k.channel)
}
func (d *Directory) px() string { return fmt.Sprint(d.opts.Lease.Milliseconds()) }

// register (and renew) this hub's entry, unless another live instance holds the id.
const registerScript = `
local v = redis.call('GET', KEYS[1])
if v then
  local ok, cur = pcall(cjson.decode, v)
  if ok and type(cur) == 'table' and cur.instance ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
return 1`

// renew every channel in KEYS held by ARGV[1] (or held by nobody: claimed again);
// 0 for a key another hub holds now.
const renewScript = `
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v == ARGV[1] then redis.call('PEXPIRE', k, ARGV[2]); out[i] = 1
  elseif not v then redis.call('SET', k, ARGV[1], 'PX', ARGV[2]); out[i] = 1
  else out[i] = 0 end
end
return out`

// set KEYS[1] to ARGV[2] if it still holds ARGV[1] (a dead owner's channel taken over).
const swapScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]); return 1
end
return 0`

// delete KEYS[1] if it holds ARGV[1].
const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

// unregister: delete the hub's entry if it is this instance's.
const unregisterScript = `
local v = redis.call('GET', KEYS[1])
if v then
  local ok, cur = pcall(cjson.decode, v)
  if ok and type(cur) == 'table' and cur.instance == ARGV[1] then
    redis.call('DEL', KEYS[1]); redis.call('SREM', KEYS[2], ARGV[2])
  end
end
return 1`

func (d *Directory) eval(ctx context.Context, script string, keys []string, args ...string) (any, error) {
	cmd := append([]string{"EVAL", script, fmt.Sprint(len(keys))}, keys...)
	return d.redis.do(ctx, append(cmd, args...)...)
}

func (d *Directory) register(ctx context.Context) (bool, error) {
	v, _ := json.Marshal(HubInfo{ID: d.opts.HubID, URL: d.opts.PublicURL, Load: d.opts.Load(), Instance: d.instance})
	r, err := d.eval(ctx, registerScript, []string{d.hubKey(d.opts.HubID), d.hubsKey()}, d.instance, string(v), d.px(), d.opts.HubID)
	if err != nil {
		return false, fmt.Errorf("cluster: register hub %s: %w", d.opts.HubID, err)
	}
	return r == int64(1), nil
}

// Run registers the hub (waiting up to two leases for a killed instance of the same id to
// expire), then renews its registration and its channels every Lease/3 until ctx ends;
// then it releases them. It returns an error when the id is held by another live hub.
func (d *Directory) Run(ctx context.Context) error {
	defer d.redis.close()
	tick := time.NewTicker(d.opts.Lease / 3)
	defer tick.Stop()
	giveUp := time.Now().Add(2*d.opts.Lease + time.Second)
	for {
		ok, err := d.register(ctx)
		if ok {
			break
		}
		if err == nil && time.Now().After(giveUp) {
			return fmt.Errorf("cluster: hub id %q is registered by another live hub", d.opts.HubID)
		}
		if err != nil {
			d.log.Warn("cannot register with Redis yet", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	d.refreshHubs(ctx)
	d.log.Info("registered in the cluster directory", "url", d.opts.PublicURL, "lease", d.opts.Lease)
	close(d.ready)
	for {
		select {
		case <-ctx.Done():
			d.unregister()
			return nil
		case <-tick.C:
		}
		if ok, err := d.register(ctx); err != nil {
			d.log.Warn("renewing the hub's registration", "err", err)
			continue
		} else if !ok {
			return fmt.Errorf("cluster: hub id %q was taken by another hub while this one could not renew it", d.opts.HubID)
		}
		d.refreshHubs(ctx)
		d.renewChannels(ctx)
	}
}

func (d *Directory) unregister() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d.mu.Lock()
	keys := make([]chanKey, 0, len(d.owned))
	for k := range d.owned {
		keys = append(keys, k)
	}
	d.owned = map[chanKey]time.Time{}
	d.mu.Unlock()
	for _, k := range keys {
		d.eval(ctx, releaseScript, []string{d.chanKey(k)}, d.opts.HubID)
	}
	if _, err := d.eval(ctx, unregisterScript, []string{d.hubKey(d.opts.HubID), d.hubsKey()}, d.instance, d.opts.HubID); err != nil {
		d.log.Warn("leaving the cluster directory", "err", err)
		return
	}
	d.log.Info("left the cluster directory", "released", len(keys))
}

// refreshHubs reads the live hubs; ids whose entry expired leave the set.
func (d *Directory) refreshHubs(ctx context.Context) {
	hubs, err := d.Hubs(ctx)
	if err != nil {
		d.log.Warn("reading the live hubs", "err", err)
		return
	}
	d.mu.Lock()
	d.hubs = hubs
	d.mu.Unlock()
}

// Hubs returns the live hubs, sorted by id.
func (d *Directory) Hubs(ctx context.Context) ([]HubInfo, error) {
	r, err := d.redis.do(ctx, "SMEMBERS", d.hubsKey())
	if err != nil {
		return nil, fmt.Errorf("cluster: list hubs: %w", err)
	}
	ids, _ := r.([]any)
	if len(ids) == 0 {
		return nil, nil
	}
	args := []string{"MGET"}
	for _, id := range ids {
		s, _ := id.(string)
		args = append(args, d.hubKey(s))
	}
	r, err = d.redis.do(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("cluster: read hubs: %w", err)
	}
	vals, _ := r.([]any)
	var out []HubInfo
	for i, v := range vals {
		s, ok := v.(string)
		var h HubInfo
		if !ok || json.Unmarshal([]byte(s), &h) != nil || h.ID == "" {
			id, _ := ids[i].(string)
			d.redis.do(ctx, "SREM", d.hubsKey(), id) // expired: a dead hub
			continue
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// hub reads one hub's entry; false when it is not live.
func (d *Directory) hub(ctx context.Context, id string) (HubInfo, bool, error) {
	r, err := d.redis.do(ctx, "GET", d.hubKey(id))
	if err != nil {
		return HubInfo{}, false, fmt.Errorf("cluster: read hub %s: %w", id, err)
	}
	s, ok := r.(string)
	var h HubInfo
	if !ok || json.Unmarshal([]byte(s), &h) != nil || h.URL == "" {
		return HubInfo{}, false, nil
	}
	return h, true, nil
}
