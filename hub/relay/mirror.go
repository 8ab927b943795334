package relay

// mirror.go: the origin's users in this hub's copy of the channel: mirrored users (sfu
// externals under the origin users' uids), the feeds of their tracks, their tokens' renewal,
// and their removal when the relay closes.

import (
	"context"
	"sync"
	"time"

	"github.com/camagent/camagent/hub/sfu"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtcp"
)

// mirror makes the origin's user uid a user of this hub's copy of the channel (once), and
// feeds in the kinds it publishes; wait: returns once they are announced here.
func (rl *relay) mirror(ctx context.Context, c *rtc.Client, uid uint32, audio, video, wait bool) {
	if IsRelay(uid) {
		return // another hub's relay: not a user of the channel
	}
	o := rl.rs.opts
	rl.mu.Lock()
	e, up := rl.users[uid], rl.up[uid]
	rl.mu.Unlock()
	if up {
		return // a viewer here, heard at the origin through this relay
	}
	if e != nil {
		select {
		case <-e.Done(): // gone here (a user of this hub took its uid over): add it again
			e = nil
		default:
		}
	}
	if e == nil {
		tok, err := o.Mint(rl.key.app, rl.key.channel, uid)
		if err != nil {
			rl.log.Warn("sign a relayed user's token", "uid", uid, "err", err)
			return
		}
		e, err = o.Service.JoinExternal(sfu.ExternalJoin{AppID: rl.key.app, Channel: rl.key.channel, Token: tok, UID: uid,
			NoTakeover: true, Local: true, Addr: "relay:" + rl.originURL()})
		if err != nil {
			rl.log.Warn("relayed user not added here", "uid", uid, "err", err)
			return
		}
		rl.mu.Lock()
		rl.users[uid] = e
		rl.mu.Unlock()
	}
	var started sync.WaitGroup
	for kind, on := range map[string]bool{rtc.KindAudio: audio, rtc.KindVideo: video} {
		if on {
			started.Add(1)
			rl.rs.wg.Add(1)
			go func() {
				defer rl.rs.wg.Done()
				rl.feed(ctx, c, e, uid, kind, started.Done)
			}()
		}
	}
	if wait {
		started.Wait()
	}
}

// feed subscribes to uid's track of kind at the origin and publishes it here as e's, until
// its stream ends; started is called once it is announced here (or failed).
func (rl *relay) feed(ctx context.Context, c *rtc.Client, e *sfu.External, uid uint32, kind string, started func()) {
	tr, err := c.Subscribe(ctx, uid, kind)
	if err != nil {
		started()
		if ctx.Err() == nil {
			rl.log.Warn("relay subscribe", "uid", uid, "kind", kind, "err", err)
		}
		return
	}
	pc := c.SubscribeConnection()
	pli := func() error {
		return pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}})
	}
	done, err := e.Feed(tr, pli)
	started()
	if err != nil {
		rl.log.Warn("relay feed", "uid", uid, "kind", kind, "err", err)
		return
	}
	rl.log.Debug("relaying a track", "uid", uid, "kind", kind, "codec", tr.Codec().MimeType)
	<-done
}

// renew replaces the relay's token at the origin and its mirrored users' here.
func (rl *relay) renew(ctx context.Context, c *rtc.Client) {
	o := rl.rs.opts
	if tok, err := o.Mint(rl.key.app, rl.key.channel, UID(o.HubID)); err == nil {
		if _, err := c.RenewToken(ctx, tok); err != nil {
			rl.log.Warn("renew the relay's token at the origin", "err", err)
		}
	}
	rl.mu.Lock()
	users := make(map[uint32]*sfu.External, len(rl.users))
	for uid, e := range rl.users {
		users[uid] = e
	}
	rl.mu.Unlock()
	for uid, e := range users {
		tok, err := o.Mint(rl.key.app, rl.key.channel, uid)
		if err == nil {
			err = e.Renew(tok)
		}
		if err != nil {
			rl.log.Warn("renew a relayed user's token", "uid", uid, "err", err)
		}
	}
}

// close takes the mirrored users out of this hub's copy and drops the relay's record.
func (rl *relay) close() {
	rl.mu.Lock()
	users := rl.users
	rl.users = map[uint32]*sfu.External{}
	rl.mu.Unlock()
	for _, e := range users {
		e.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rl.rs.opts.Drop(ctx, rl.key.app, rl.key.channel); err != nil {
		rl.log.Warn("dropping the relay's record", "err", err)
	}
}
