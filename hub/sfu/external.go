// external.go: users without signalling (WHIP publishers, WHEP viewers of hub/whip): joining,
// leaving and publishing. A WHEP viewer's connection is in external_view.go, its slots in
// external_slot.go.
//
// External users have no signalling socket: a WHIP publisher or a WHEP viewer (hub/whip) makes
// one offer and gets one answer over HTTP. In the channel they are ordinary users: they join
// with a token (checked as any join's), the others see user-joined, user-published and
// user-left for them, what they send is checked against their token's privileges, and a
// viewer's first video frame is a keyframe requested the moment its connection is up.

package sfu

import (
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/sdp/v3"
)

// ExternalJoin is a user without signalling entering a channel.
type ExternalJoin struct {
	AppID, Channel, Token string
	// UID 0: the token's uid, or a free one for a wildcard token.
	UID uint32
	// NoTakeover refuses a uid already in the channel (UID_IN_USE) even when the token names
	// it: the hub minted the token for a uid it picked, not one the client chose to reclaim.
	NoTakeover bool
	// Addr is the client address (logs, noise limits); Host the Host it reached the hub at.
	Addr, Host string
	// Publishes lists the kinds a publisher's offer sends: a token that may not publish them
	// is refused before the user enters the channel (nobody sees it come and go).
	Publishes map[string]bool
	// Local keeps the user on this hub whatever the cluster directory says: a relay's copy
	// of a user of the channel's origin hub (relay.go), whose tracks come through Feed.
	Local bool
}

// External is a user in a channel without signalling, until Close or its connection fails
// or its token expires.
type External struct {
	s    *session
	done chan struct{}
}

// JoinExternal puts a user without signalling into a channel; the error is an *rtc.Error.
func (svc *Service) JoinExternal(j ExternalJoin) (*External, error) {
	if svc.ctx.Err() != nil {
		return nil, rtc.Errorf(rtc.CodeInternal, "the channel service is shutting down")
	}
	s := newSession(svc, nil, j.Addr)
	s.host = j.Host
	s.noTakeover = j.NoTakeover
	s.local = j.Local
	m := &rtc.Message{AppID: j.AppID, Channel: j.Channel, Token: j.Token}
	if j.UID != 0 {
		uid := j.UID
		m.UID = &uid
	}
	switch {
	case j.AppID == "" || len(j.AppID) > 64:
		s.cancel()
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "appId must be 1-64 bytes")
	case !rtc.ValidChannel(j.Channel):
		s.cancel()
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "channel must be 1-64 printable ASCII characters")
	case len(j.Token) > 4096:
		s.cancel()
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "token too long")
	}
	if len(j.Publishes) > 0 {
		if c, err := token.Parse(j.Token, svc.opts.Verify); err == nil {
			if err := allowPublish(c, j.Publishes); err != nil {
				s.cancel()
				svc.refused.Add(1)
				svc.refusedMedia.Add(1)
				return nil, err
			}
		} // else the join below refuses the token, with its reason
	}
	if _, err := s.join(m); err != nil {
		s.cancel()
		return nil, asProtoErr(err)
	}
	e := &External{s: s, done: make(chan struct{})}
	svc.wg.Add(1)
	go func() {
		defer svc.wg.Done()
		defer close(e.done)
		<-s.ctx.Done()
		s.closeView()
		s.teardown()
	}()
	return e, nil
}

// OfferMedia reads an SDP offer as pion will: the media kinds it sends and those it receives
// on. The error (an *rtc.Error) says the text is not a session description.
func OfferMedia(offer string) (sends, receives map[string]bool, err error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return nil, nil, rtc.Errorf(rtc.CodeInvalidParams, "not a session description: %v", err)
	}
	sends, receives = map[string]bool{}, map[string]bool{}
	for _, md := range d.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != rtc.KindAudio && kind != rtc.KindVideo {
			continue
		}
		switch mediaDirection(&d, md) {
		case "sendrecv":
			sends[kind], receives[kind] = true, true
		case "sendonly":
			sends[kind] = true
		case "recvonly":
			receives[kind] = true
		}
	}
	return sends, receives, nil
}

// FreeUID picks a uid nobody holds in the channel now (for a token the hub mints).
func (svc *Service) FreeUID(app, channel string) uint32 {
	return svc.freeUID(channelKey{app, channel})
}

// UID is the user's uid in the channel.
func (e *External) UID() uint32 { return e.s.uidNow() }

// Done is closed once the user has left the channel.
func (e *External) Done() <-chan struct{} { return e.done }

// Close takes the user out of the channel (the others get user-left "quit") and waits.
func (e *External) Close() {
	e.s.setLeaveReason("quit")
	e.s.cancel()
	<-e.done
}

// LeaveReason is why the user left ("quit", "timeout", "expired", "replaced"), once Done.
func (e *External) LeaveReason() string {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	return e.s.leaveWhy
}

// Publish applies a WHIP offer to the user's publish connection and returns the answer, as a
// signalling user's publish (the same privilege checks, before and after pion reads it).
func (e *External) Publish(offer string) (string, error) {
	reply, err := e.s.publish(&rtc.Message{SDP: offer})
	if err != nil {
		return "", asProtoErr(err)
	}
	return reply.SDP, nil
}
