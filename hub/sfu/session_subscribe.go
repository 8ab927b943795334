// session_subscribe.go: subscribing: the subscribe connection's transceivers and data channels,
// the subscriber's RTCP, and the first keyframe a new subscriber waits for.

package sfu

import (
	"log/slog"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
)

func (s *session) subscribe(m *rtc.Message) (*rtc.Message, error) {
	s.mu.Lock()
	ch, claims := s.ch, s.claims
	s.mu.Unlock()
	if !claims.Has(token.PrivSubscribe) {
		return nil, rtc.Errorf(rtc.CodeNoPrivilege, "token does not allow subscribing")
	}
	uid := *m.UID
	publisher := ch.lookup(uid)
	if publisher == nil || publisher == s {
		return nil, rtc.Errorf(rtc.CodeNoSuchUser, "no user %d in this channel", uid)
	}
	t := publisher.publishedTrack(m.Kind)
	if t == nil {
		return nil, rtc.Errorf(rtc.CodeNotPublished, "user %d publishes no %s", uid, m.Kind)
	}
	key := subKey{uid, m.Kind}
	s.mu.Lock()
	existing := s.subs[key]
	pc := s.sub
	s.mu.Unlock()
	overDC := m.Transport == rtc.TransportDataChannel
	if existing != nil && existing.track == t && (existing.feed != nil) == overDC {
		if existing.feed != nil {
			return &rtc.Message{Label: existing.feed.dc.Label()}, nil
		}
		return &rtc.Message{Mid: existing.transceiver.Mid()}, nil
	}
	if existing != nil {
		s.dropSubscription(key)
	} else if s.subscriptions() >= rtc.MaxSubscriptions {
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "subscribe: at most %d subscriptions per session", rtc.MaxSubscriptions)
	}
	if pc == nil {
		var err error
		if pc, err = s.newPeerConnection(rtc.ConnSubscribe); err != nil {
			return nil, err
		}
		// The subscribe connection only sends (its transceivers have no receivers); should a
		// track ever arrive on it anyway, it is stopped, never forwarded.
		pc.OnTrack(func(remote *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
			s.svc.refusedMedia.Add(1)
			s.svc.noisy(slog.LevelWarn, s.addr, "media on a subscribe connection; stopped", "uid", s.uidNow(), "kind", remote.Kind().String())
			r.Stop()
		})
		s.mu.Lock()
		s.sub = pc
		s.mu.Unlock()
	}
	if overDC {
		label, err := s.subscribeDataChannel(pc, t, key)
		if err != nil {
			return nil, err
		}
		return &rtc.Message{Label: label}, nil
	}
	out, err := t.newOutlet()
	if err != nil {
		return nil, rtc.Errorf(rtc.CodeInternal, "subscribe: %v", err)
	}
	out.ready = func() bool { return out.local.bound() && pc.ConnectionState() == webrtc.PeerConnectionStateConnected }
	tr, err := s.sendTransceiver(pc, out.local)
	if err != nil {
		return nil, rtc.Errorf(rtc.CodeInternal, "subscribe: add track: %v", err)
	}
	sub := &subscription{track: t, transceiver: tr, fresh: true}
	s.mu.Lock()
	s.subs[key] = sub
	s.mu.Unlock()
	t.addSubscriber(s, out)
	go s.readRTCP(tr.Sender(), t)
	if err := s.renegotiate(); err != nil {
		s.dropSubscription(key)
		return nil, err
	}
	return &rtc.Message{Mid: tr.Mid()}, nil
}

// sendTransceiver puts a track on the subscribe connection: on an m-line an ended subscription
// left inactive, when there is one of its kind, else on a new one. Without the reuse every
// subscription would add an m-line for good (a viewer watching a device that joins and leaves
// again), and each offer and answer grows with them: 30 m-lines took Chromium ≈ 40 ms more per
// offer than one (docs/performance.md, 1).
func (s *session) sendTransceiver(pc *webrtc.PeerConnection, track webrtc.TrackLocal) (*webrtc.RTPTransceiver, error) {
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() != track.Kind() || tr.Mid() == "" || tr.Sender() != nil || tr.Direction() != webrtc.RTPTransceiverDirectionInactive {
			continue
		}
		snd, err := s.svc.opts.API.NewRTPSender(track, pc.SCTP().Transport())
		if err != nil {
			return nil, err
		}
		if err := tr.SetSender(snd, track); err != nil {
			_ = snd.Stop()
			return nil, err
		}
		return tr, nil
	}
	return pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
}

func (s *session) subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// readRTCP drains a subscriber's RTCP for one track: keyframe requests go to the publisher,
// NACKs are answered from the track's cache.
func (s *session) readRTCP(sender *webrtc.RTPSender, t *track) {
	peer.DrainRTCP(sender, peer.Feedback{
		Keyframe: t.requestKeyframe,
		NACK:     func(seqs []uint16) { t.resendTo(s, seqs) },
	})
}

func (s *session) unsubscribe(m *rtc.Message) (*rtc.Message, error) {
	key := subKey{*m.UID, m.Kind}
	s.mu.Lock()
	_, ok := s.subs[key]
	s.mu.Unlock()
	if !ok {
		return nil, rtc.Errorf(rtc.CodeNotPublished, "not subscribed to user %d's %s", key.uid, key.kind)
	}
	s.dropSubscription(key)
	return &rtc.Message{}, nil
}

// dropSubscription stops sending a track to this user and renegotiates.
func (s *session) dropSubscription(key subKey) {
	s.mu.Lock()
	sub := s.subs[key]
	delete(s.subs, key)
	pc := s.sub
	s.mu.Unlock()
	if sub == nil {
		return
	}
	sub.track.removeSubscriber(s)
	if sub.feed != nil {
		sub.feed.close() // a data channel needs no renegotiation
		return
	}
	if pc == nil || s.ctx.Err() != nil {
		return
	}
	if err := pc.RemoveTrack(sub.transceiver.Sender()); err != nil {
		s.log.Debug("remove track", "err", err)
	}
	if err := s.renegotiate(); err != nil {
		s.log.Debug("renegotiate after unsubscribe", "err", err)
	}
}

// requestFreshKeyframes asks each newly subscribed track's publisher for a keyframe, once the
// subscriber can receive it: a keyframe sent before then would be lost.
func (s *session) requestFreshKeyframes() {
	var tracks []*track
	s.mu.Lock()
	for _, sub := range s.subs {
		if sub.fresh && sub.transceiver != nil && sub.transceiver.Mid() != "" {
			sub.fresh = false
			tracks = append(tracks, sub.track)
		}
	}
	s.mu.Unlock()
	for _, t := range tracks {
		t.startSubscriber(s)
		s.awaitFirstKeyframe(t, keyframeRetries)
	}
}

// A subscriber still waiting for its first keyframe keyframeRetry after asking asks again, a
// few times: the publisher's keyframe may have come before the subscriber could take it, or been
// lost, and a browser publisher may send no other for a long time (seen: Chromium's VP8 to a
// Firefox viewer, now and then no picture at all).
const (
	keyframeRetry   = 700 * time.Millisecond
	keyframeRetries = 5
)

func (s *session) awaitFirstKeyframe(t *track, tries int) {
	if t.kind != rtc.KindVideo || tries <= 0 {
		return
	}
	s.after(keyframeRetry, func() {
		t.mu.Lock()
		o := t.subs[s]
		t.mu.Unlock()
		if o == nil || !o.waiting.Load() {
			return
		}
		s.log.Debug("still no keyframe for a new subscriber; asking again", "of", t.uid)
		t.requestKeyframe()
		s.awaitFirstKeyframe(t, tries-1)
	})
}
