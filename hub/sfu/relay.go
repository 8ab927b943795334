// relay.go: channels relayed between hubs (docs/scaling.md, "Relays"). A channel runs on one
// hub, its origin; when it has more viewers than that hub should carry, new viewers are placed
// on other hubs that relay it: such a hub joins the origin as a client (hub/relay), and its
// local copy of the channel holds the origin's users as users without signalling whose
// tracks are the ones it receives from the origin. Its viewers are ordinary users here.

package sfu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Placement is where a viewer's join goes: URL, another hub to join instead, or Origin,
// the hub this one relays the channel from (the viewer stays here); both empty: here.
type Placement struct {
	URL, Origin string
}

// ViewerPlacer is a Placer that also places viewers (users whose token may not publish
// video) of busy channels on relay hubs. here counts the channel's viewers on this hub.
type ViewerPlacer interface {
	PlaceViewer(ctx context.Context, app, channel string, here int) (Placement, error)
}

// Relayer runs this hub's relays (Options.Relayer): Relay returns once this hub relays
// app's channel from the hub at origin and its copy holds the origin's users.
type Relayer interface {
	Relay(ctx context.Context, app, channel, origin string) error
}

// ChannelViewers counts the viewers in a channel on this hub: its users whose token may not
// publish video (a relay's users, hub to hub, may).
func (svc *Service) ChannelViewers(app, name string) int {
	svc.mu.Lock()
	c := svc.channels[channelKey{app, name}]
	svc.mu.Unlock()
	if c == nil {
		return 0
	}
	n := 0
	for _, s := range c.others(nil) {
		s.mu.Lock()
		if s.claims != nil && isViewer(s.claims) {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// isViewer reports whether a join with claims is placed as a viewer.
func isViewer(c *token.Claims) bool { return !c.Grants(token.PrivPublishVideo) }

// placedViewer places a viewer's join: nil when it stays here (the channel runs here, or
// this hub relays it and the relay runs), else the redirect. A relay that does not start
// sends the viewer to the origin.
func (s *session) placedViewer(p ViewerPlacer, app, channel string) error {
	ctx, cancel := context.WithTimeout(s.ctx, placeTimeout)
	defer cancel()
	pl, err := p.PlaceViewer(ctx, app, channel, s.svc.ChannelViewers(app, channel))
	if err != nil {
		s.log.Warn("the cluster directory did not answer: the channel runs here", "app", app, "channel", channel, "err", err)
		return nil
	}
	url := pl.URL
	if pl.Origin != "" {
		r := s.svc.opts.Relayer
		if r == nil {
			url = pl.Origin
		} else if err := s.startRelay(r, app, channel, pl.Origin); err != nil {
			s.log.Warn("relay did not start: the viewer is sent to the channel's hub", "app", app, "channel", channel, "origin", pl.Origin, "err", err)
			url = pl.Origin
		}
	}
	if url == "" {
		return nil
	}
	s.log.Debug("join redirected", "app", app, "channel", channel, "to", url)
	return &rtc.Error{Code: rtc.CodeRedirect, Message: fmt.Sprintf("channel %q runs on another hub: join it at %s", channel, url), URL: url}
}

// relayStart bounds the wait for a relay to join the origin and mirror its users.
const relayStart = 5 * time.Second

func (s *session) startRelay(r Relayer, app, channel, origin string) error {
	ctx, cancel := context.WithTimeout(s.ctx, relayStart)
	defer cancel()
	return r.Relay(ctx, app, channel, origin)
}

// Feed publishes remote, a track this hub receives from the channel's origin hub, as the
// user's track of its kind: announced to the channel before it returns, then forwarded until
// its stream ends or the user leaves (done is closed then). pli asks the origin for a
// keyframe (the relay's subscribe connection sends a PLI there).
func (e *External) Feed(remote *webrtc.TrackRemote, pli func() error) (done <-chan struct{}, err error) {
	if !e.s.local {
		return nil, errors.New("sfu: feed: only a relay's user (ExternalJoin.Local) takes tracks from another hub")
	}
	if e.s.ctx.Err() != nil {
		return nil, errors.New("sfu: feed: the user has left the channel")
	}
	t, err := newTrack(e.s.svc, remote, pli, e.s.uidNow())
	if err != nil {
		return nil, fmt.Errorf("sfu: feed %s: %w", remote.Kind(), err)
	}
	if !e.s.announceTrack(t) {
		return nil, errors.New("sfu: feed: the user is in no channel")
	}
	ch := make(chan struct{})
	e.s.svc.wg.Add(1)
	go func() {
		defer e.s.svc.wg.Done()
		defer close(ch)
		e.s.forwardTrack(t)
	}()
	return ch, nil
}

// Renew replaces the user's token (as a signalling user's renew: same App, channel, uid).
func (e *External) Renew(tok string) error {
	if _, err := e.s.renew(&rtc.Message{Token: tok}); err != nil {
		return asProtoErr(err)
	}
	return nil
}

// LocalUsers returns the users of app's channel on this hub that are not a relay's copies of
// another hub's users, with what they publish.
func (svc *Service) LocalUsers(app, channel string) []rtc.User {
	svc.mu.Lock()
	c := svc.channels[channelKey{app, channel}]
	svc.mu.Unlock()
	if c == nil {
		return nil
	}
	var out []rtc.User
	for _, u := range c.snapshot(0) {
		if s := c.lookup(u.UID); s != nil && !s.local {
			out = append(out, u)
		}
	}
	return out
}

// Tap hands each packet of uid's track of kind in app's channel to sink (which must not
// change it), from now until stop is called or the track ends (done is closed then); codec
// is the track's. A relay sends a viewer's talk-back to the origin with it.
func (svc *Service) Tap(app, channel string, uid uint32, kind string, sink func(*rtp.Packet) error) (codec webrtc.RTPCodecParameters, stop func(), done <-chan struct{}, err error) {
	svc.mu.Lock()
	c := svc.channels[channelKey{app, channel}]
	svc.mu.Unlock()
	var t *track
	if c != nil {
		if s := c.lookup(uid); s != nil {
			t = s.publishedTrack(kind)
		}
	}
	if t == nil {
		return codec, nil, nil, rtc.Errorf(rtc.CodeNotPublished, "user %d publishes no %s here", uid, kind)
	}
	key := &session{} // the tap's place among the track's subscribers
	t.addSubscriber(key, &outlet{sink: sink})
	return t.remote.Codec(), func() { t.removeSubscriber(key) }, t.done, nil
}
