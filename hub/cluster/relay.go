package cluster

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
)

// Relays (docs/scaling.md, "Relays"): a channel with more than Options.RelayAbove users on
// the hub that holds it takes its next viewers to other hubs, which relay it from there. The
// holder names each relay hub in Redis under <prefix>:relay:<app>/<channel>:<hub id> (a
// lease of 3 × Lease, renewed by the relay hub while it relays), so that every hub sends the
// channel's viewers consistently: a relay hub keeps those that reach it, the others are sent
// to the holder, which keeps them or passes them on to a relay.

func (d *Directory) relayKey(k chanKey, hubID string) string {
	return d.opts.Prefix + ":relay:" + url.PathEscape(k.app) + "/" + url.PathEscape(k.channel) + ":" + url.PathEscape(hubID)
}

func (d *Directory) relayPX() string { return fmt.Sprint(3 * d.opts.Lease.Milliseconds()) }

// PlaceViewer decides where a viewer joining app's channel at this hub goes, given here, the
// channel's users on this hub now: to is the hub to join instead ("" to stay); origin, when
// set, is the holder's base URL and means this hub relays the channel for the viewer. A hub
// that is not the channel's holder nor one of its relays sends the viewer to the holder; the
// holder keeps it until the channel has RelayAbove users here (0: always), then sends it to
// the least loaded other live hub, recorded as a relay. A channel nobody holds is placed as
// Place does.
func (d *Directory) PlaceViewer(ctx context.Context, app, channel string, here int) (to, origin string, err error) {
	k := chanKey{app, channel}
	d.mu.Lock()
	_, held := d.owned[k]
	d.mu.Unlock()
	if held {
		if d.opts.RelayAbove <= 0 || here < d.opts.RelayAbove {
			return "", "", nil
		}
		return d.pickRelay(ctx, k)
	}
	r, err := d.redis.do(ctx, "GET", d.chanKey(k))
	if err != nil {
		d.adopt(k)
		return "", "", fmt.Errorf("cluster: read channel owner: %w", err)
	}
	if owner, _ := r.(string); owner != "" && owner != d.opts.HubID {
		h, live, err := d.hub(ctx, owner)
		if err != nil {
			return "", "", err
		}
		if live {
			rel, err := d.redis.do(ctx, "GET", d.relayKey(k, d.opts.HubID))
			if err != nil {
				return "", "", fmt.Errorf("cluster: read relay: %w", err)
			}
			if rel != nil {
				return "", h.URL, nil
			}
			return h.URL, "", nil
		}
	}
	to, err = d.Place(ctx, app, channel)
	return to, "", err
}

// pickRelay sends a viewer of a channel full here to a relay: one that has fewer than
// RelayAbove viewers of it (the fewest), else the least loaded other live hub, which becomes
// a relay; when every other hub relays it already and is full, the least full. With no other
// live hub the viewer stays here. The relay's record counts the viewer at once (its hub
// writes its true count each second).
func (d *Directory) pickRelay(ctx context.Context, k chanKey) (string, string, error) {
	d.mu.Lock()
	var others []HubInfo
	for _, h := range d.hubs {
		if h.ID != d.opts.HubID {
			others = append(others, h)
		}
	}
	d.mu.Unlock()
	if len(others) == 0 {
		return "", "", nil
	}
	args := []string{"MGET"}
	for _, h := range others {
		args = append(args, d.relayKey(k, h.ID))
	}
	r, err := d.redis.do(ctx, args...)
	if err != nil {
		return "", "", fmt.Errorf("cluster: read relays: %w", err)
	}
	counts, _ := r.([]any)
	relaying, fresh := -1, -1 // the least full relay, the least loaded hub that is none
	viewers := func(i int) int {
		s, _ := counts[i].(string)
		n, _ := strconv.Atoi(s)
		return n
	}
	for i, h := range others {
		switch {
		case i < len(counts) && counts[i] != nil:
			if relaying < 0 || viewers(i) < viewers(relaying) {
				relaying = i
			}
		case fresh < 0 || h.Load < others[fresh].Load:
			fresh = i
		}
	}
	pick, n := fresh, 1
	if relaying >= 0 && (viewers(relaying) < d.opts.RelayAbove || fresh < 0) {
		pick, n = relaying, viewers(relaying)+1
	}
	target := others[pick]
	if _, err := d.redis.do(ctx, "SET", d.relayKey(k, target.ID), strconv.Itoa(n), "PX", d.relayPX()); err != nil {
		return "", "", fmt.Errorf("cluster: record relay: %w", err)
	}
	d.bump(target.ID)
	d.log.Debug("viewer placed on a relay", "app", k.app, "channel", k.channel, "relay", target.ID, "viewers", n)
	return target.URL, "", nil
}

// KeepRelay renews this hub's record as a relay of app's channel (while it relays it), with
// the channel's viewers here.
func (d *Directory) KeepRelay(ctx context.Context, app, channel string, viewers int) error {
	if _, err := d.redis.do(ctx, "SET", d.relayKey(chanKey{app, channel}, d.opts.HubID), strconv.Itoa(viewers), "PX", d.relayPX()); err != nil {
		return fmt.Errorf("cluster: renew relay: %w", err)
	}
	return nil
}

// DropRelay removes this hub's record as a relay of app's channel (its relay closed).
func (d *Directory) DropRelay(ctx context.Context, app, channel string) error {
	if _, err := d.redis.do(ctx, "DEL", d.relayKey(chanKey{app, channel}, d.opts.HubID)); err != nil {
		return fmt.Errorf("cluster: drop relay: %w", err)
	}
	return nil
}

// OwnerURL returns the base URL of the live hub that holds app's channel, or here when this
// hub holds it ("" and false: nobody does, or its holder is dead).
func (d *Directory) OwnerURL(ctx context.Context, app, channel string) (hubURL string, here bool, err error) {
	owner, err := d.Owner(ctx, app, channel)
	if err != nil || owner == "" {
		return "", false, err
	}
	if owner == d.opts.HubID {
		return "", true, nil
	}
	h, live, err := d.hub(ctx, owner)
	if err != nil || !live {
		return "", false, err
	}
	return h.URL, false, nil
}
