// client_restart.go: keeping the media path: watching both connections' ICE state and
// restarting ICE over the signalling socket when a path dies.

package rtc

import (
	"context"
	"time"

	"github.com/camagent/camagent/internal/backoff"
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

// pathWatch is what watchPaths knows about one peer connection's media path.
type pathWatch struct {
	lostAt      time.Time // when ICE went disconnected or failed; zero while the path is up
	lastRestart time.Time
	retry       time.Duration // how long after lastRestart to restart again
	bo          backoff.Backoff
}

// watchPaths restarts ICE on a peer connection whose media path died while the signalling
// socket lives on: disconnected for RestartAfter, or failed. A restart that does not bring
// the path back is retried with back-off until it does or the client ends.
func (c *Client) watchPaths() {
	defer c.wg.Done()
	if c.opts.RestartAfter < 0 {
		return
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	watches := map[string]*pathWatch{ConnPublish: {}, ConnSubscribe: {}}
	for {
		kicked := ""
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		case kicked = <-c.kick:
		}
		for _, which := range []string{ConnPublish, ConnSubscribe} {
			c.mu.Lock()
			pc := c.pub
			if which == ConnSubscribe {
				pc = c.sub
			}
			c.mu.Unlock()
			if pc == nil {
				continue
			}
			w, now := watches[which], time.Now()
			st := pc.ICEConnectionState()
			if kicked == which && w.lostAt.IsZero() {
				// The hub lost this path though ours looks fine (say, only our uplink died).
				c.log.Warn("media path lost at the hub", "connection", which, "ice", st.String())
				w.lostAt = now
				st = webrtc.ICEConnectionStateFailed
			}
			switch st {
			case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
				if !w.lostAt.IsZero() {
					c.log.Info("media path restored", "connection", which, "after", now.Sub(w.lostAt).Round(time.Millisecond))
				}
				*w = pathWatch{}
				continue
			case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
				if w.lostAt.IsZero() {
					w.lostAt = now
					c.log.Warn("media path lost", "connection", which, "ice", st.String())
				}
			case webrtc.ICEConnectionStateClosed:
				continue
			}
			if w.lostAt.IsZero() {
				continue // new or checking, not yet connected: the first connection is on its way
			}
			if w.lastRestart.IsZero() {
				if st != webrtc.ICEConnectionStateFailed && now.Sub(w.lostAt) < c.opts.RestartAfter {
					continue
				}
			} else if now.Sub(w.lastRestart) < w.retry {
				continue
			}
			w.lastRestart = now
			w.bo.First, w.bo.Max = restartRetryMin, restartRetryMax
			w.retry = w.bo.Next()
			if which == ConnSubscribe && time.Unix(0, c.hubRestart.Load()).After(w.lostAt.Add(-time.Second)) && w.bo.Failures() == 1 {
				// The hub is restarting this connection already; asking again would reset
				// a path it may just have found. Retry later if that one does not work.
				c.log.Info("the hub is restarting ICE", "connection", which)
				continue
			}
			if err := c.restartICE(which); err != nil && c.ctx.Err() == nil {
				c.log.Warn("ICE restart failed", "connection", which, "err", err, "retry in", w.retry)
			}
		}
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
