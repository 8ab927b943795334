package hub

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/camagent/camagent/hub/cluster"
	"github.com/camagent/camagent/hub/relay"
	"github.com/camagent/camagent/hub/sfu"
	"github.com/camagent/camagent/hub/token"
	"github.com/pion/webrtc/v4"
)

// newCluster prepares this hub's part of the cluster directory (cluster.redis): nil for a
// single hub. It reads the channel service only once Run has started it.
func (h *Hub) newCluster() (*cluster.Directory, error) {
	c := h.cfg.Cluster
	if c.Redis == "" {
		return nil, nil
	}
	d, err := cluster.New(cluster.Options{Redis: c.Redis, HubID: c.HubID, PublicURL: c.PublicURL, Lease: c.Lease,
		Prefix: c.Prefix, Logger: h.log, RelayAbove: c.RelayAbove,
		Load:   func() int { return h.sfu.Stats().Users },
		Active: func(app, channel string) bool { return len(h.sfu.ChannelUsers(app, channel)) > 0 },
		// Another hub took the channel while this one was cut off from Redis: its users here
		// are closed with channel-moved and rejoin through their entry hub, sent to the holder.
		Lost: func(app, channel string) { h.sfu.Moved(app, channel) }})
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	return d, nil
}

// runCluster keeps the hub registered until ctx ends, and waits (a few seconds at most) for
// the first registration, so that a hub reported ready is known to the others. A hub that
// cannot reach Redis serves its own joins meanwhile.
func (h *Hub) runCluster(ctx context.Context, d *cluster.Directory, wg *sync.WaitGroup, errc chan<- error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.Run(ctx); err != nil {
			errc <- fmt.Errorf("hub: cluster: %w", err)
		}
	}()
	select {
	case <-d.Ready():
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		h.log.Warn("not registered in the cluster directory yet: serving joins here until Redis answers", "component", "cluster",
			"redis", redactURL(h.cfg.Cluster.Redis))
	}
}

// clusterPlacer is the directory as the channel service's ViewerPlacer.
type clusterPlacer struct{ *cluster.Directory }

func (p clusterPlacer) PlaceViewer(ctx context.Context, app, channel string, here int) (sfu.Placement, error) {
	url, origin, err := p.Directory.PlaceViewer(ctx, app, channel, here)
	return sfu.Placement{URL: url, Origin: origin}, err
}

// hubRelayer passes the channel service's relays on to the hub's (made after the service).
type hubRelayer struct{ h *Hub }

func (r hubRelayer) Relay(ctx context.Context, app, channel, origin string) error {
	return r.h.relays.Relay(ctx, app, channel, origin)
}

// newRelays prepares the hub's relays of channels held by other hubs (they end with ctx).
func (h *Hub) newRelays(ctx context.Context, api *webrtc.API) *relay.Relays {
	d := h.cluster
	return relay.New(ctx, relay.Options{HubID: d.ID(), Service: h.sfu, API: api, Logger: h.log,
		Keep: d.KeepRelay, Drop: d.DropRelay, Origin: d.OwnerURL,
		Mint: func(app, channel string, uid uint32) (string, error) {
			cert, ok := h.Certificate(app)
			if !ok {
				return "", fmt.Errorf("unknown App ID %q", app)
			}
			tok, _, err := token.MintPrivileges(app, cert, channel, uid,
				[]string{token.PrivJoin, token.PrivPublishAudio, token.PrivPublishVideo, token.PrivSubscribe}, relay.TokenTTL, time.Now())
			return tok, err
		}})
}

// writeClusterMetrics adds the cluster's gauges to /metrics.
func (h *Hub) writeClusterMetrics(w http.ResponseWriter) {
	if h.cluster == nil {
		return
	}
	fmt.Fprintf(w, "# HELP camhub_cluster_channels_held Channels this hub holds in the cluster directory.\n# TYPE camhub_cluster_channels_held gauge\ncamhub_cluster_channels_held %d\n", h.cluster.Held())
	fmt.Fprintf(w, "# HELP camhub_cluster_relays Channels of other hubs this hub relays now.\n# TYPE camhub_cluster_relays gauge\ncamhub_cluster_relays %d\n", h.relays.Running())
}
