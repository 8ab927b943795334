// client_restart.go: keeping the media path: watching both connections' ICE state and
// restarting ICE over the signalling socket when a path dies.

package rtc

import (
	"context"
	"time"

	"github.com/camagent/camagent/internal/backoff"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
)

// Restart back-off: the first retry of a restart that did not bring the path back waits
// up to restartRetryMin, doubling to restartRetryMax, jittered (internal/backoff).
const (
	restartRetryMin = 5 * time.Second
	restartRetryMax = 30 * time.Second
)

// ICERestarts counts the ICE restarts this client asked for.
func (c *Client) ICERestarts() uint64 { return c.restarts.Load() }

// watchPath watches a new peer connection's media path (rtc/peer) and restarts its ICE over
// the signalling socket when the path dies while the socket lives: disconnected for
// RestartAfter, or failed. A restart that does not bring the path back is retried with
// back-off until it does or the client ends.
func (c *Client) watchPath(which string, pc *webrtc.PeerConnection) {
	if c.opts.RestartAfter < 0 {
		return
	}
	p := peer.Watch(pc, peer.PathOptions{
		After: c.opts.RestartAfter,
		Retry: func(n int) time.Duration { return backoff.Delay(restartRetryMin, restartRetryMax, n-1) },
		Log:   c.log.With("connection", which),
	}, peer.PathEvents{
		Lost: func(n int, lostAt time.Time) { c.pathLost(which, n, lostAt) },
		Up: func(bool) {
			if c.opts.OnConnected != nil {
				c.opts.OnConnected(which)
			}
		},
	})
	c.mu.Lock()
	c.paths[which] = p
	c.mu.Unlock()
}

// pathLost restarts ICE on a connection whose path was lost at lostAt (n: the how-manieth
// restart of this loss).
func (c *Client) pathLost(which string, n int, lostAt time.Time) {
	if c.ctx.Err() != nil {
		return
	}
	if which == ConnSubscribe && n == 1 && time.Unix(0, c.hubRestart.Load()).After(lostAt.Add(-time.Second)) {
		// The hub is restarting this connection already; asking again would reset a path
		// it may just have found. Retry later if that one does not work.
		c.log.Info("the hub is restarting ICE", "connection", which)
		return
	}
	if err := c.restartICE(which); err != nil && c.ctx.Err() == nil {
		c.log.Warn("ICE restart failed; retrying with back-off", "connection", which, "err", err, "restart", n)
	}
}

// lostAtHub handles the hub's word that a connection lost its media path though ours may
// look fine (say, only our uplink died).
func (c *Client) lostAtHub(which string) {
	c.mu.Lock()
	p := c.paths[which]
	c.mu.Unlock()
	if p != nil {
		p.LostElsewhere()
	}
}

// restartICE restarts ICE on one peer connection with fresh credentials and ICE servers.
func (c *Client) restartICE(which string) error {
	c.restarts.Add(1)
	c.log.Info("restarting ICE", "connection", which)
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.RequestTimeout)
	defer cancel()
	r, err := c.request(ctx, &Message{Type: TypeRestart, Connection: which})
	if err != nil {
		return err
	}
	if which == ConnSubscribe {
		return nil // the hub's ICE-restart offer follows, with its ICE servers
	}
	c.setICEServers(r.ICEServers)
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	pc := c.pub
	c.mu.Unlock()
	if err := c.refreshConfiguration(pc); err != nil {
		return err
	}
	return c.negotiatePublish(ctx, pc, &webrtc.OfferOptions{ICERestart: true})
}
