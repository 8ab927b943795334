// session_publish.go: publishing: the publish offer's privilege checks (on the SDP and on what
// pion will receive), the publish connection and its reset, and the tracks it brings.

package sfu

import (
	"log/slog"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// publishPrivilege is the privilege publishing each media kind needs.
var publishPrivilege = map[string]string{rtc.KindAudio: token.PrivPublishAudio, rtc.KindVideo: token.PrivPublishVideo}

// sendKinds returns the media kinds an offer sends, read as pion reads it: an audio or video
// m-line sends unless its first direction attribute (or else the session's first, else the
// default sendrecv) is recvonly or inactive. Rejected (port 0) m-lines count too: pion does not
// skip them.
func sendKinds(offer string) (map[string]bool, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "publish: sdp is not a session description: %v", err)
	}
	kinds := map[string]bool{}
	for _, md := range d.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != rtc.KindAudio && kind != rtc.KindVideo {
			continue
		}
		if dir := mediaDirection(&d, md); dir != "recvonly" && dir != "inactive" {
			kinds[kind] = true
		}
	}
	return kinds, nil
}

// mediaDirection is an m-line's direction as pion reads it: its first direction attribute,
// else the session's first, else sendrecv.
func mediaDirection(d *sdp.SessionDescription, md *sdp.MediaDescription) string {
	if dir := firstDirection(md.Attributes); dir != "" {
		return dir
	}
	if dir := firstDirection(d.Attributes); dir != "" {
		return dir
	}
	return "sendrecv"
}

func firstDirection(attrs []sdp.Attribute) string {
	for _, a := range attrs {
		switch a.Key {
		case "sendonly", "recvonly", "inactive", "sendrecv":
			return a.Key
		}
	}
	return ""
}

// receivingKinds returns the media kinds pc will receive as its descriptions stand: the
// transceivers with a receiver whose direction receives (what pion starts receivers for).
func receivingKinds(pc *webrtc.PeerConnection) map[string]bool {
	kinds := map[string]bool{}
	for _, t := range pc.GetTransceivers() {
		if receives(t) {
			kinds[t.Kind().String()] = true
		}
	}
	return kinds
}

func receives(t *webrtc.RTPTransceiver) bool {
	d := t.Direction()
	return t.Receiver() != nil && (d == webrtc.RTPTransceiverDirectionRecvonly || d == webrtc.RTPTransceiverDirectionSendrecv)
}

// allowPublish checks that claims allow publishing every kind in kinds.
func allowPublish(claims *token.Claims, kinds map[string]bool) error {
	for _, kind := range []string{rtc.KindAudio, rtc.KindVideo} {
		if !kinds[kind] || claims.Grants(publishPrivilege[kind]) {
			continue
		}
		if claims.UID == 0 && claims.Has(publishPrivilege[kind]) {
			return rtc.Errorf(rtc.CodeNoPrivilege, "a wildcard-uid token does not allow publishing %s: use a token for the uid", kind)
		}
		return rtc.Errorf(rtc.CodeNoPrivilege, "token does not allow publishing %s", kind)
	}
	return nil
}

// publish applies a publish offer and answers it. Privileges are checked twice: on the SDP as
// pion reads it, before anything is applied (a refusal changes nothing), and on what pion will
// actually receive once the offer is applied (its transceivers). pion cannot roll a remote
// offer back, so an offer refused or failing once applied resets the publish connection: it
// is closed, its tracks unpublished, and the session's next publish starts a new one. Either
// way the session's publishing is never left half-negotiated.
func (s *session) publish(m *rtc.Message) (*rtc.Message, error) {
	kinds, err := sendKinds(m.SDP)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	claims, pc := s.claims, s.pub
	s.mu.Unlock()
	if !s.svc.skipOfferPrecheck.Load() {
		if err := allowPublish(claims, kinds); err != nil {
			s.svc.refusedMedia.Add(1)
			return nil, err
		}
	}
	if pc == nil {
		if pc, err = s.newPeerConnection(rtc.ConnPublish); err != nil {
			return nil, err
		}
		pc.OnTrack(func(remote *webrtc.TrackRemote, r *webrtc.RTPReceiver) { s.onTrack(pc, remote, r) })
		s.mu.Lock()
		s.pub = pc
		s.mu.Unlock()
	}
	// fail resets the publish connection after the offer was applied, and says so.
	fail := func(e *rtc.Error) (*rtc.Message, error) {
		s.resetPublish(pc)
		e.Message += " (the publish connection was reset: publish again on a new connection)"
		return nil, e
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		return fail(rtc.Errorf(rtc.CodeNegotiation, "publish: apply offer: %v", err))
	}
	recv := receivingKinds(pc)
	if err := allowPublish(claims, recv); err != nil {
		s.svc.refusedMedia.Add(1)
		return fail(asProtoErr(err))
	}
	sdp, err := peer.Answer(s.ctx, pc, s.gathering())
	if err != nil {
		e := negotiationError("publish", err)
		if e.Code != rtc.CodeNegotiation {
			return nil, e // gathering or the session failed, not the offer: the connection stays
		}
		return fail(e)
	}
	// Kinds no longer received are unpublished now; new ones are announced when media arrives.
	for _, kind := range []string{rtc.KindAudio, rtc.KindVideo} {
		if !recv[kind] {
			s.unpublishKind(kind)
		}
	}
	return &rtc.Message{SDP: sdp}, nil
}

// resetPublish closes the publish connection pc (if it is still the session's) and
// unpublishes its tracks.
func (s *session) resetPublish(pc *webrtc.PeerConnection) {
	s.mu.Lock()
	current := s.pub == pc
	if current {
		s.pub = nil
	}
	s.mu.Unlock()
	pc.Close()
	if current {
		s.log.Info("publish connection reset after a refused or failed offer")
		for _, kind := range []string{rtc.KindAudio, rtc.KindVideo} {
			s.unpublishKind(kind)
		}
	}
}

// onTrack runs when a publisher's media arrives on its publish connection pc: the track becomes
// available to subscribers, if the token allows publishing its kind (checked again here, after
// the offer's check: a track the token does not allow is stopped, never forwarded).
func (s *session) onTrack(pc *webrtc.PeerConnection, remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	kind := remote.Kind().String()
	s.mu.Lock()
	ch, uid, claims := s.ch, s.uid, s.claims
	s.mu.Unlock()
	if ch == nil || s.ctx.Err() != nil {
		return
	}
	if priv, ok := publishPrivilege[kind]; !ok || !claims.Grants(priv) {
		s.svc.refusedMedia.Add(1)
		s.svc.noisy(slog.LevelWarn, s.addr, "track the token does not allow; stopped", "uid", uid, "kind", kind)
		receiver.Stop()
		return
	}
	t, err := newTrack(s.svc, remote, publisherPLI(pc, remote), uid)
	if err != nil {
		s.log.Error("forward track", "kind", kind, "err", err)
		return
	}
	s.serveTrack(t)
}

// serveTrack offers t to the channel as the session's track of its kind (replacing the one
// before), forwards it until its stream ends, then unpublishes it.
func (s *session) serveTrack(t *track) {
	if s.announceTrack(t) {
		s.forwardTrack(t)
	}
}

// announceTrack makes t the session's track of its kind and tells the channel; false when the
// session is in no channel.
func (s *session) announceTrack(t *track) bool {
	kind := t.kind
	s.mu.Lock()
	ch, uid := s.ch, s.uid
	s.mu.Unlock()
	if ch == nil {
		return false
	}
	remote := t.remote
	s.unpublishKind(kind) // a new stream for a kind replaces the old one
	s.mu.Lock()
	s.published[kind] = t
	s.mu.Unlock()
	s.log.Info("user published", "kind", kind, "codec", remote.Codec().MimeType)
	ch.broadcast(uid, &rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventUserPublished, UID: &uid, Kind: kind, Codec: remote.Codec().MimeType})
	s.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventPublished, Kind: kind})
	return true
}

// forwardTrack forwards an announced track until its stream ends, then unpublishes it.
func (s *session) forwardTrack(t *track) {
	t.forward(s.ctx) // returns when the publisher's stream ends
	s.mu.Lock()
	current := s.published[t.kind] == t
	s.mu.Unlock()
	if current {
		s.unpublishKind(t.kind)
	}
}

// unpublishKind stops offering the kind to others and tells them.
func (s *session) unpublishKind(kind string) {
	s.mu.Lock()
	t := s.published[kind]
	delete(s.published, kind)
	ch, uid := s.ch, s.uid
	s.mu.Unlock()
	if t == nil {
		return
	}
	t.close()
	for _, sub := range t.subscribers() {
		sub.dropSubscription(subKey{uid, kind})
	}
	if ch != nil {
		s.log.Info("user unpublished", "kind", kind)
		ch.broadcast(uid, &rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventUserUnpublished, UID: &uid, Kind: kind})
	}
}

func (s *session) publishes() (audio, video bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published[rtc.KindAudio] != nil, s.published[rtc.KindVideo] != nil
}

// publishedCodecs returns the MIME types of the published tracks ("" for a kind not published).
func (s *session) publishedCodecs() (audio, video string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.published[rtc.KindAudio]; t != nil {
		audio = t.remote.Codec().MimeType
	}
	if t := s.published[rtc.KindVideo]; t != nil {
		video = t.remote.Codec().MimeType
	}
	return audio, video
}

func (s *session) publishedTrack(kind string) *track {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published[kind]
}
