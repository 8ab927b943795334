package relay

import (
	"context"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Talk-back: a viewer here that publishes audio is heard at the origin. For each such
// viewer the relay joins the origin as that viewer's uid (a token it signs itself) and
// publishes its audio there, packet for packet as this hub receives it (sfu Service.Tap).
// The origin's users, the device among them, see the viewer as one of theirs; the relay
// does not mirror it back here.

// upstreamPoll is how often the relay looks for viewers here that publish audio.
const upstreamPoll = 200 * time.Millisecond

// upstreams starts an upstream for each viewer here that publishes audio and has none.
func (rl *relay) upstreams(ctx context.Context) {
	for _, u := range rl.rs.opts.Service.LocalUsers(rl.key.app, rl.key.channel) {
		if !u.Audio || IsRelay(u.UID) {
			continue
		}
		rl.mu.Lock()
		running := rl.up[u.UID]
		if !running {
			rl.up[u.UID] = true
		}
		rl.mu.Unlock()
		if running {
			continue
		}
		rl.rs.wg.Add(1)
		go func() {
			defer rl.rs.wg.Done()
			rl.upstream(ctx, u.UID)
			rl.mu.Lock()
			delete(rl.up, u.UID)
			rl.mu.Unlock()
		}()
	}
}

// upstreamRetry is how long a talk-back that did not reach the origin waits before the next try.
const upstreamRetry = 3 * time.Second

// upstream publishes viewer uid's audio at the origin until it stops here or the relay ends.
func (rl *relay) upstream(ctx context.Context, uid uint32) {
	if !rl.publishUp(ctx, uid) {
		select { // not reached: the next poll tries again, not at once
		case <-time.After(upstreamRetry):
		case <-ctx.Done():
		}
	}
}

// publishUp is one try of upstream: false when it did not reach the origin.
func (rl *relay) publishUp(ctx context.Context, uid uint32) bool {
	o := rl.rs.opts
	log := rl.log.With("uid", uid)
	var local *webrtc.TrackLocalStaticRTP
	ready := make(chan struct{})
	codec, stop, done, err := o.Service.Tap(rl.key.app, rl.key.channel, uid, rtc.KindAudio, func(p *rtp.Packet) error {
		select {
		case <-ready:
			return local.WriteRTP(p)
		default:
			return nil
		}
	})
	if err != nil {
		log.Debug("talk-back not relayed", "err", err)
		return false
	}
	defer stop()
	local, err = webrtc.NewTrackLocalStaticRTP(codec.RTPCodecCapability, rtc.KindAudio, "relay")
	if err != nil {
		log.Warn("talk-back to the origin", "err", err)
		return false
	}
	close(ready)
	tok, err := o.Mint(rl.key.app, rl.key.channel, uid)
	if err != nil {
		log.Warn("sign a talk-back token", "err", err)
		return false
	}
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: rl.originURL(), API: o.API, Logger: log})
	if err != nil {
		log.Warn("talk-back: dial the origin", "err", err)
		return false
	}
	defer c.Close()
	if _, err := c.Join(ctx, rl.key.app, rl.key.channel, uid, tok); err != nil {
		log.Warn("talk-back: join the origin", "err", err)
		return false
	}
	if _, err := c.Publish(ctx, local); err != nil {
		log.Warn("talk-back: publish at the origin", "err", err)
		return false
	}
	log.Info("talk-back relayed to the origin")
	select {
	case <-done:
	case <-ctx.Done():
	case <-c.Done():
		log.Warn("talk-back: the origin ended the connection", "err", c.Err())
	}
	return true
}
