package sfu

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
)

// Placer decides which hub of a cluster runs a channel (hub/cluster's Directory). Without
// one (Options.Placer nil) this hub runs every channel.
type Placer interface {
	// Place returns "" when app's channel runs on this hub, else the base URL of the hub
	// the user should join instead. On an error the channel runs here.
	Place(ctx context.Context, app, channel string) (hubURL string, err error)
}

// placeTimeout bounds the directory's answer; a join waits no longer for it.
const placeTimeout = 2 * time.Second

// placed asks the Placer, for a user whose token allows the join, whether the channel runs
// on another hub: then the join is answered with CodeRedirect naming it (a WHIP/WHEP user
// gets an HTTP 307). A directory that does not answer leaves the channel here.
func (s *session) placed(app, channel string, claims *token.Claims) error {
	p := s.svc.opts.Placer
	if p == nil || s.local {
		return nil
	}
	if vp, ok := p.(ViewerPlacer); ok && isViewer(claims) {
		return s.placedViewer(vp, app, channel)
	}
	ctx, cancel := context.WithTimeout(s.ctx, placeTimeout)
	defer cancel()
	url, err := p.Place(ctx, app, channel)
	if err != nil {
		s.log.Warn("the cluster directory did not answer: the channel runs here", "app", app, "channel", channel, "err", err)
		return nil
	}
	if url == "" {
		return nil
	}
	s.log.Debug("join redirected", "app", app, "channel", channel, "to", url)
	return &rtc.Error{Code: rtc.CodeRedirect, Message: fmt.Sprintf("channel %q runs on another hub: join it at %s", channel, url), URL: url}
}

// Moved ends app's channel on this hub because another hub of the cluster holds it now (this
// one lost its lease while it could not reach the directory): each user with a socket is
// sent EventChannelMoved and its session closed at once (no reconnect grace: user-left,
// reason "moved"), so it joins again through its entry hub and is sent to the holder; places
// kept for a reconnect are dropped; WHIP and WHEP users are disconnected (their client makes
// a new request, answered 307). It returns how many users were closed.
func (s *Service) Moved(app, channel string) int {
	s.mu.Lock()
	c := s.channels[channelKey{app, channel}]
	s.mu.Unlock()
	if c == nil {
		return 0
	}
	c.mu.Lock()
	users := maps.Clone(c.users)
	c.mu.Unlock()
	n := 0
	for uid, sess := range users {
		if sess.ctx.Err() != nil { // gone, its place kept for a reconnect
			s.exit(c, uid, sess)
			continue
		}
		sess.setLeaveReason("moved")
		sess.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventChannelMoved,
			Reason: "the channel runs on another hub now: join again through your entry hub"})
		sess.cancel()
		n++
	}
	s.log.Info("channel moved to another hub: its users here were closed", "app", app, "channel", channel, "users", n)
	return n
}
