package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Place decides where a user joining app's channel at this hub goes: "" when the channel
// runs here (it was held here, placed here now, or placed on this hub by another), else the
// base URL of the live hub that holds it or that it was just placed on. A channel whose
// owner's registration expired is taken over. On a Redis error the caller may serve the
// channel itself: the channel is then marked held here, claimed at the next renewal if
// nobody else took it meanwhile (and given up through Lost if someone did).
func (d *Directory) Place(ctx context.Context, app, channel string) (string, error) {
	k := chanKey{app, channel}
	d.mu.Lock()
	_, held := d.owned[k]
	d.mu.Unlock()
	if held {
		return "", nil
	}
	url, err := d.place(ctx, k)
	if err != nil {
		d.adopt(k)
		return "", err
	}
	return url, nil
}

func (d *Directory) place(ctx context.Context, k chanKey) (string, error) {
	key := d.chanKey(k)
	for try := 0; try < 4; try++ {
		r, err := d.redis.do(ctx, "GET", key)
		if err != nil {
			return "", fmt.Errorf("cluster: read channel owner: %w", err)
		}
		owner, _ := r.(string)
		if owner == d.opts.HubID {
			// Placed here by another hub: renew at once (that hub set the lease a moment ago).
			if _, err := d.eval(ctx, renewScript, []string{key}, d.opts.HubID, d.px()); err != nil {
				return "", fmt.Errorf("cluster: renew channel: %w", err)
			}
			d.adopt(k)
			return "", nil
		}
		if owner != "" {
			h, live, err := d.hub(ctx, owner)
			if err != nil {
				return "", err
			}
			if live {
				return h.URL, nil
			}
		}
		target := d.pick()
		var set any
		if owner == "" {
			set, err = d.redis.do(ctx, "SET", key, target.ID, "NX", "PX", d.px())
		} else {
			set, err = d.eval(ctx, swapScript, []string{key}, owner, target.ID, d.px())
		}
		if err != nil {
			return "", fmt.Errorf("cluster: place channel: %w", err)
		}
		if set == nil || set == int64(0) {
			continue // another hub placed it meanwhile: read again
		}
		if owner != "" {
			d.log.Info("channel taken over from a dead hub", "app", k.app, "channel", k.channel, "from", owner, "to", target.ID)
		} else {
			d.log.Debug("channel placed", "app", k.app, "channel", k.channel, "on", target.ID)
		}
		if target.ID == d.opts.HubID {
			d.adopt(k)
			return "", nil
		}
		d.bump(target.ID)
		return target.URL, nil
	}
	return "", errors.New("cluster: the channel's placement kept changing")
}

// pick returns the least loaded live hub, this one on a tie (no redirect), else the first
// by id. This hub is always a candidate, with its load now.
func (d *Directory) pick() HubInfo {
	self := HubInfo{ID: d.opts.HubID, URL: d.opts.PublicURL, Load: d.opts.Load()}
	best := self
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range d.hubs {
		if h.ID != self.ID && h.Load < best.Load {
			best = h
		}
	}
	return best
}

// bump counts a channel just sent to hub id in its cached load, so that a burst of
// placements before the next refresh spreads instead of landing on one hub.
func (d *Directory) bump(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.hubs {
		if d.hubs[i].ID == id {
			d.hubs[i].Load++
		}
	}
}

func (d *Directory) adopt(k chanKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.owned[k]; !ok {
		d.owned[k] = time.Now()
	}
}

// Owner returns the id of the hub that holds app's channel ("" for none).
func (d *Directory) Owner(ctx context.Context, app, channel string) (string, error) {
	r, err := d.redis.do(ctx, "GET", d.chanKey(chanKey{app, channel}))
	if err != nil {
		return "", fmt.Errorf("cluster: read channel owner: %w", err)
	}
	s, _ := r.(string)
	return s, nil
}

// Held returns how many channels this hub holds.
func (d *Directory) Held() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.owned)
}

// renewChannels renews the leases of the channels still running here, releases those that
// ended (a channel adopted less than a lease ago is kept: its first user may be on the
// way), and gives up those another hub holds now.
func (d *Directory) renewChannels(ctx context.Context) {
	d.mu.Lock()
	var keep, drop []chanKey
	for k, since := range d.owned {
		if d.opts.Active(k.app, k.channel) || time.Since(since) < d.opts.Lease {
			keep = append(keep, k)
		} else {
			drop = append(drop, k)
		}
	}
	for _, k := range drop {
		delete(d.owned, k)
	}
	d.mu.Unlock()
	for _, k := range drop {
		if _, err := d.eval(ctx, releaseScript, []string{d.chanKey(k)}, d.opts.HubID); err != nil {
			d.log.Warn("releasing a channel", "app", k.app, "channel", k.channel, "err", err)
		}
	}
	for len(keep) > 0 {
		batch := keep[:min(len(keep), 500)]
		keep = keep[len(batch):]
		keys := make([]string, len(batch))
		for i, k := range batch {
			keys[i] = d.chanKey(k)
		}
		r, err := d.eval(ctx, renewScript, keys, d.opts.HubID, d.px())
		if err != nil {
			d.log.Warn("renewing channel leases", "channels", len(batch), "err", err)
			return
		}
		res, _ := r.([]any)
		for i, k := range batch {
			if i < len(res) && res[i] == int64(1) {
				continue
			}
			d.mu.Lock()
			delete(d.owned, k)
			d.mu.Unlock()
			d.log.Warn("channel now held by another hub: its users here are sent there", "app", k.app, "channel", k.channel)
			if d.opts.Lost != nil {
				d.opts.Lost(k.app, k.channel)
			}
		}
	}
}
