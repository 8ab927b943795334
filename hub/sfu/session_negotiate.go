// session_negotiate.go: the peer connections' negotiation and repair: creating a connection and
// watching its media path, the subscribe connection's offers and answers (one offer in flight,
// renegotiation when due), and ICE restarts, the hub's own and the client's.

package sfu

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
)

// newPeerConnection creates the user's publish or subscribe connection (which is
// rtc.ConnPublish or rtc.ConnSubscribe) and watches its media path (rtc/peer).
func (s *session) newPeerConnection(which string) (*webrtc.PeerConnection, error) {
	pc, err := s.svc.opts.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, rtc.Errorf(rtc.CodeInternal, "create peer connection: %v", err)
	}
	wait := s.svc.opts.ICERestartWait
	peer.Watch(pc, peer.PathOptions{
		After: restartAfter,
		Retry: func(int) time.Duration { return wait },
		Log:   s.log.With("connection", which),
	}, peer.PathEvents{
		Up:   func(wasLost bool) { s.pathUp(which, wasLost) },
		Lost: func(n int, _ time.Time) { s.pathLost(which, pc, n) },
	})
	return pc, nil
}

// pathUp runs each time a connection is connected: the subscriber needs a keyframe for what it
// is sent, and after a loss the publisher's subscribers do too (frames were lost meanwhile).
func (s *session) pathUp(which string, wasLost bool) {
	if s.ctx.Err() != nil {
		return
	}
	if which == rtc.ConnSubscribe {
		s.requestFreshKeyframes()
	} else if t := s.publishedTrack(rtc.KindVideo); t != nil && wasLost {
		t.requestKeyframeNow()
	}
}

// pathLost runs when a connection's media path stayed disconnected for restartAfter, or
// failed (n = 1), and again ICERestartWait after each restart while it is not back. The
// client may still be there (its signalling socket is what tells): ICE restarts over the
// socket. The hub restarts the subscribe connection it offers itself, and asks the client to
// restart the publish connection (the client may not have noticed: browsers take long, and
// when only its uplink died media still reaches it). Without a restart that brings the path
// back within ICERestartWait, the user is gone.
func (s *session) pathLost(which string, pc *webrtc.PeerConnection, n int) {
	if s.ctx.Err() != nil {
		return
	}
	if s.conn == nil || n > 1 { // no signalling to restart ICE over, or the restart did not help
		if n > 1 {
			s.log.Warn("media path not restored; user lost", "connection", which, "state", pc.ConnectionState().String())
		}
		s.setLeaveReason("timeout")
		s.cancel()
		return
	}
	s.log.Warn("media path lost; restarting ICE", "connection", which, "state", pc.ConnectionState().String(), "wait", s.svc.opts.ICERestartWait)
	if which == rtc.ConnSubscribe {
		if err := s.restartSubscribe(); err != nil {
			s.log.Warn("ICE restart of the subscribe connection", "err", err)
		}
		return
	}
	s.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventRestartICE, Connection: rtc.ConnPublish})
}

// gathering is how the hub waits for its candidates: it has no TURN of its own to wait for,
// so gathering completes in milliseconds; gatherWait bounds it anyway.
func (s *session) gathering() peer.Gathering {
	return peer.Gathering{Timeout: gatherWait, Log: s.log}
}

// negotiationError turns a failed offer or answer into the protocol's error: gathering that
// did not complete (or a session that ended meanwhile) is the hub's fault, the rest the SDP's.
func negotiationError(what string, err error) *rtc.Error {
	if errors.Is(err, context.Canceled) {
		return rtc.Errorf(rtc.CodeInternal, "session closed")
	}
	if errors.Is(err, peer.ErrGatherIncomplete) {
		return rtc.Errorf(rtc.CodeInternal, "%s: %v", what, err)
	}
	return rtc.Errorf(rtc.CodeNegotiation, "%s: %v", what, err)
}

// renegotiate sends a new offer for the subscribe connection, or marks one as due when an
// answer is still awaited.
func (s *session) renegotiate() error {
	s.negMu.Lock()
	defer s.negMu.Unlock()
	s.mu.Lock()
	pc := s.sub
	s.mu.Unlock()
	if pc == nil || s.ctx.Err() != nil {
		return nil
	}
	if s.awaitingAnswer {
		s.dirty = true
		return nil
	}
	var opts *webrtc.OfferOptions
	restarting := s.iceRestart
	if restarting {
		opts = &webrtc.OfferOptions{ICERestart: true}
		s.iceRestart = false
	}
	sdp, err := peer.Offer(s.ctx, pc, opts, s.gathering())
	if err != nil {
		return negotiationError("subscribe offer", err)
	}
	tracks := map[string]rtc.TrackInfo{}
	s.mu.Lock()
	for key, sub := range s.subs {
		if sub.transceiver == nil {
			continue
		}
		if mid := sub.transceiver.Mid(); mid != "" {
			tracks[mid] = rtc.TrackInfo{UID: key.uid, Kind: key.kind}
		}
	}
	s.mu.Unlock()
	s.awaitingAnswer = true
	s.restartSent = restarting
	m := &rtc.Message{Type: rtc.TypeOffer, SDP: sdp, Tracks: tracks}
	if restarting {
		m.ICEServers = s.iceServers()
	}
	s.send(m)
	return nil
}

// restart begins an ICE restart of one of the user's peer connections: its media path died
// while the signalling socket lives. The subscribe connection gets a new offer with fresh ICE
// credentials (and the tracks on it a keyframe once it is back); the publish connection is
// restarted by the client's next publish offer. Both get fresh ICE servers.
func (s *session) restart(m *rtc.Message) (*rtc.Message, error) {
	s.mu.Lock()
	pc := s.pub
	if m.Connection == rtc.ConnSubscribe {
		pc = s.sub
	}
	now := time.Now()
	tooSoon := pc != nil && now.Sub(s.lastRestart[m.Connection]) < restartMinGap
	if pc != nil && !tooSoon {
		if s.lastRestart == nil {
			s.lastRestart = map[string]time.Time{}
		}
		s.lastRestart[m.Connection] = now
	}
	s.mu.Unlock()
	if pc == nil {
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "restart: no %s connection", m.Connection)
	}
	if tooSoon { // each restart costs a gathering and an offer: a client may not loop on them
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "restart: at most one per %s per connection", restartMinGap)
	}
	s.log.Info("ICE restart requested", "connection", m.Connection, "state", pc.ConnectionState().String())
	if m.Connection == rtc.ConnPublish {
		s.svc.iceRestarts.Add(1)
	} else {
		if err := s.restartSubscribe(); err != nil {
			return nil, err
		}
	}
	return &rtc.Message{ICEServers: s.iceServers()}, nil
}

// restartSubscribe sends an ICE-restart offer for the subscribe connection, unless one is
// already on its way (the hub and the client both noticed the dead path).
func (s *session) restartSubscribe() error {
	s.negMu.Lock()
	if s.iceRestart || s.restartSent {
		s.negMu.Unlock()
		return nil
	}
	s.iceRestart = true
	s.negMu.Unlock()
	s.svc.iceRestarts.Add(1)
	s.mu.Lock()
	for _, sub := range s.subs {
		sub.fresh = true // frames were lost: a keyframe once the path is back
	}
	s.mu.Unlock()
	return s.renegotiate()
}

// iceServers returns the STUN/TURN servers, with fresh credentials, for this user.
func (s *session) iceServers() []rtc.ICEServer {
	f := s.svc.opts.ICEServers
	if f == nil {
		return nil
	}
	s.mu.Lock()
	app, uid, exp := s.claims.AppID, s.uid, s.claims.Expiry()
	s.mu.Unlock()
	return f(s.host, app, uid, exp)
}

func (s *session) answer(m *rtc.Message) error {
	s.negMu.Lock()
	s.mu.Lock()
	pc := s.sub
	s.mu.Unlock()
	if pc == nil || !s.awaitingAnswer {
		s.negMu.Unlock()
		return rtc.Errorf(rtc.CodeBadMessage, "answer without an offer")
	}
	// A track the subscriber cannot decode ends alone, not the connection (playable.go).
	refused := s.refuseUnplayable(m.SDP, pc)
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP})
	s.awaitingAnswer = false
	s.restartSent = false
	again := s.dirty || len(refused) > 0
	s.dirty = false
	s.negMu.Unlock()
	for _, e := range refused {
		s.send(e)
	}
	if err != nil {
		return rtc.Errorf(rtc.CodeNegotiation, "apply answer: %v", err)
	}
	// The subscribe connection never receives: an answer that says it sends (sendrecv where
	// the hub offered sendonly) gets nothing applied for it, and any receiver is stopped.
	if kinds, _ := sendKinds(m.SDP); len(kinds) > 0 {
		s.svc.refusedMedia.Add(1)
		s.svc.noisy(slog.LevelWarn, s.addr, "subscribe answer offers to send media; ignored", "uid", s.uidNow())
	}
	for _, t := range pc.GetTransceivers() {
		if receives(t) {
			t.Receiver().Stop()
		}
	}
	if pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		s.requestFreshKeyframes()
	}
	if again {
		return s.renegotiate()
	}
	return nil
}
