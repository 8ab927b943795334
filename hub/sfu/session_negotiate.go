// session_negotiate.go: the peer connections' negotiation and repair: creating a connection and
// watching its media path, the subscribe connection's offers and answers (one offer in flight,
// renegotiation when due), and ICE restarts, the hub's own and the client's.

package sfu

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// newPeerConnection creates the user's publish or subscribe connection (which is
// rtc.ConnPublish or rtc.ConnSubscribe).
func (s *session) newPeerConnection(which string) (*webrtc.PeerConnection, error) {
	pc, err := s.svc.opts.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, rtc.Errorf(rtc.CodeInternal, "create peer connection: %v", err)
	}
	var (
		lost       atomic.Bool   // the media path died since it was last connected
		restarting atomic.Bool   // and its ICE restart has begun
		losses     atomic.Uint64 // restarts begun: a deadline belongs to one of them
	)
	// pathLost runs when the media path stays disconnected for restartAfter, or fails. The
	// client may still be there (its signalling socket is what tells): ICE restarts over the
	// socket. The hub restarts the subscribe connection it offers itself, and asks the client
	// to restart the publish connection (the client may not have noticed: browsers take
	// long, and when only its uplink died media still reaches it). Without a restart that
	// brings the path back within ICERestartWait, the user is gone.
	pathLost := func() {
		if s.conn == nil { // no signalling to restart ICE over: the user is gone
			if s.ctx.Err() != nil {
				return
			}
			s.setLeaveReason("timeout")
			s.cancel()
			return
		}
		if !restarting.CompareAndSwap(false, true) {
			return
		}
		loss := losses.Add(1)
		wait := s.svc.opts.ICERestartWait
		s.log.Warn("media path lost; restarting ICE", "connection", which, "state", pc.ConnectionState().String(), "wait", wait)
		if which == rtc.ConnSubscribe {
			if err := s.restartSubscribe(); err != nil {
				s.log.Warn("ICE restart of the subscribe connection", "err", err)
			}
		} else {
			s.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventRestartICE, Connection: rtc.ConnPublish})
		}
		s.after(wait, func() {
			if losses.Load() != loss || pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
				return // back, or lost again later: that loss has its own deadline
			}
			s.log.Warn("media path not restored; user lost", "connection", which, "state", pc.ConnectionState().String())
			s.setLeaveReason("timeout")
			s.cancel()
		})
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("peer connection state", "connection", which, "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			restarting.Store(false)
			wasLost := lost.Swap(false)
			if wasLost {
				s.log.Info("media path restored", "connection", which)
			}
			if which == rtc.ConnSubscribe {
				s.requestFreshKeyframes()
			} else if t := s.publishedTrack(rtc.KindVideo); t != nil && wasLost {
				// Frames were lost while the path was down: the subscribers need a keyframe.
				t.requestKeyframeNow()
			}
		case webrtc.PeerConnectionStateDisconnected:
			lost.Store(true)
			s.after(restartAfter, func() {
				if st := pc.ConnectionState(); st == webrtc.PeerConnectionStateDisconnected || st == webrtc.PeerConnectionStateFailed {
					pathLost()
				}
			})
		case webrtc.PeerConnectionStateFailed:
			lost.Store(true)
			go pathLost()
		}
	})
	return pc, nil
}

func (s *session) wait(done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-time.After(gatherWait):
		return rtc.Errorf(rtc.CodeInternal, "ICE gathering did not complete in %s", gatherWait)
	case <-s.ctx.Done():
		return rtc.Errorf(rtc.CodeInternal, "session closed")
	}
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
	offer, err := pc.CreateOffer(opts)
	if err != nil {
		return rtc.Errorf(rtc.CodeNegotiation, "create offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return rtc.Errorf(rtc.CodeNegotiation, "set offer: %v", err)
	}
	if err := s.wait(gathered); err != nil {
		return err
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
	m := &rtc.Message{Type: rtc.TypeOffer, SDP: pc.LocalDescription().SDP, Tracks: tracks}
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
