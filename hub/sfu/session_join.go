// session_join.go: joining a channel and renewing the token: token checks, uid assignment,
// taking over a held uid, and the token's warning and expiry timers.

package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
)

// tokenError maps a refused token to its protocol code.
func tokenError(err error) *rtc.Error {
	var te *token.Error
	if !errors.As(err, &te) {
		return rtc.Errorf(rtc.CodeTokenInvalid, "%v", err)
	}
	code := map[token.Reason]string{
		token.ReasonMissing:      rtc.CodeTokenMissing,
		token.ReasonMalformed:    rtc.CodeTokenInvalid,
		token.ReasonBadSignature: rtc.CodeTokenInvalid,
		token.ReasonUnknownApp:   rtc.CodeAppUnknown,
		token.ReasonWrongApp:     rtc.CodeTokenWrongApp,
		token.ReasonWrongChannel: rtc.CodeTokenWrongChannel,
		token.ReasonWrongUID:     rtc.CodeTokenWrongUID,
		token.ReasonExpired:      rtc.CodeTokenExpired,
		token.ReasonNotYetValid:  rtc.CodeTokenNotYetValid,
		token.ReasonNoPrivilege:  rtc.CodeNoPrivilege,
		token.ReasonTooLong:      rtc.CodeTokenInvalid,
	}[te.Reason]
	return &rtc.Error{Code: code, Message: te.Message}
}

func (s *session) checkToken(text, app, ch string, uid uint32) (*token.Claims, error) {
	if _, ok := s.svc.opts.Certificate(app); !ok {
		return nil, rtc.Errorf(rtc.CodeAppUnknown, "unknown App ID %q", app)
	}
	claims, err := token.Parse(text, s.svc.opts.Verify)
	if err == nil {
		err = claims.Check(app, ch, uid, "", s.svc.opts.Now())
	}
	if err != nil {
		return nil, tokenError(err)
	}
	return claims, nil
}

func (s *session) join(m *rtc.Message) (*rtc.Message, error) {
	if s.channel() != nil {
		return nil, rtc.Errorf(rtc.CodeAlreadyJoined, "already in a channel; leave first")
	}
	key := channelKey{m.AppID, m.Channel}
	var uid uint32
	if m.UID != nil && *m.UID != 0 {
		uid = *m.UID
	}
	// A join without uid takes the token's uid, or a free one when the token admits any.
	if uid == 0 && m.Token != "" {
		if c, err := token.Parse(m.Token, s.svc.opts.Verify); err == nil && c.UID != 0 {
			uid = c.UID
		}
	}
	assigned := uid == 0
	if assigned {
		uid = s.svc.freeUID(key)
	}
	claims, err := s.checkToken(m.Token, m.AppID, m.Channel, uid)
	if err != nil {
		s.svc.refused.Add(1)
		return nil, err
	}
	if err := s.placed(m.AppID, m.Channel, claims); err != nil {
		return nil, err
	}
	// Only a token naming the uid takes over a session holding it; a wildcard token gets a
	// free uid or nothing (an assigned uid taken meanwhile: pick another).
	enter := func(uid uint32) (*channel, *session, error) {
		s.mu.Lock()
		s.uid, s.claims = uid, claims // before the others can see the session
		s.mu.Unlock()
		return s.svc.enter(key, uid, s, claims.UID == uid && !s.noTakeover)
	}
	c, old, err := enter(uid)
	for tries := 0; err != nil && assigned && tries < 3; tries++ {
		uid = s.svc.freeUID(key)
		c, old, err = enter(uid)
	}
	if err != nil {
		s.mu.Lock()
		s.uid, s.claims = 0, nil
		s.mu.Unlock()
		s.svc.refused.Add(1)
		return nil, err
	}
	s.mu.Lock()
	s.log = s.log.With("app", m.AppID, "channel", m.Channel, "uid", uid)
	s.ch = c
	s.mu.Unlock()
	// A session that already ended holds a place kept for a reconnect: take it over quietly,
	// the others never saw the user leave.
	returning := old != nil && old.ctx.Err() != nil
	if returning {
		old = nil
	}
	if old != nil {
		old.setLeaveReason("replaced")
		old.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventReplaced, UID: &uid,
			Reason: "another session joined with the same uid"})
		old.cancel()
	}
	s.svc.joins.Add(1)
	s.armExpiry(claims)
	users := c.snapshot(uid)
	if returning {
		s.log.Info("user rejoined within its grace period")
	} else {
		s.log.Info("user joined")
		c.broadcast(uid, &rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventUserJoined, UID: &uid})
	}
	reply := &rtc.Message{UID: &uid, Users: users, ExpiresAt: claims.ExpiresAt, ICEServers: s.iceServers()}
	if m.CanResume && s.conn != nil {
		reply.Resume = s.makeResumable() // resume.go
	}
	return reply, nil
}

// renew replaces the session's token. The new token must be for the same App, channel and
// uid as the one it joined with (a named uid stays that uid; a wildcard stays a wildcard). What
// the new token no longer grants stops at once: tracks of a kind it may not publish are
// unpublished, and without subscribe every subscription is dropped.
func (s *session) renew(m *rtc.Message) (*rtc.Message, error) {
	s.mu.Lock()
	app, name, uid, old := s.ch.key.app, s.ch.key.name, s.uid, s.claims
	s.mu.Unlock()
	claims, err := s.checkToken(m.Token, app, name, uid)
	if err != nil {
		return nil, err
	}
	if claims.UID != old.UID {
		return nil, rtc.Errorf(rtc.CodeTokenWrongUID, "renew: the token is for uid %d; this session joined with a token for uid %d", claims.UID, old.UID)
	}
	s.mu.Lock()
	s.claims = claims
	s.mu.Unlock()
	s.armExpiry(claims)
	s.log.Info("token renewed", "expires", claims.Expiry())
	for kind, priv := range publishPrivilege {
		if !claims.Grants(priv) {
			if s.publishedTrack(kind) != nil {
				s.log.Info("renewed token does not allow publishing; unpublishing", "kind", kind)
			}
			s.unpublishKind(kind)
		}
	}
	if !claims.Grants(token.PrivSubscribe) {
		s.mu.Lock()
		keys := make([]subKey, 0, len(s.subs))
		for k := range s.subs {
			keys = append(keys, k)
		}
		s.mu.Unlock()
		for _, k := range keys {
			s.dropSubscription(k)
		}
	}
	return &rtc.Message{ExpiresAt: claims.ExpiresAt}, nil
}

// armExpiry (re)starts the warning and expiry timers of the session's token.
func (s *session) armExpiry(c *token.Claims) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.timers {
		t.Stop()
	}
	left := time.Until(c.Expiry())
	if now := s.svc.opts.Now(); !now.IsZero() {
		left = c.Expiry().Sub(now)
	}
	warn := left - s.svc.opts.WillExpireBefore
	if warn < 0 {
		warn = 0
	}
	s.timers = []*time.Timer{
		time.AfterFunc(warn, func() {
			s.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventTokenWillExpire})
		}),
		time.AfterFunc(left, func() {
			s.log.Info("token expired, disconnecting user")
			s.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventTokenDidExpire})
			s.setLeaveReason("expired")
			s.cancel()
		}),
	}
}

func randomUID() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:]) // never fails (Go 1.24+)
		// Keep assigned uids below 2^31 so that JavaScript and JSON tools handle them plainly.
		if uid := binary.BigEndian.Uint32(b[:]) & 0x7fffffff; uid != 0 {
			return uid
		}
	}
}
