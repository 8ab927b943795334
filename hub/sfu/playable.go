package sfu

import (
	"strings"

	"github.com/camagent/camagent/rtc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// A subscriber that cannot receive a track's codec (Firefox without its OpenH264 plugin has no
// H.264 in WebRTC) answers the hub's offer without it. pion then fails the whole answer
// ("codec is not supported by remote") before starting ICE, so every other track of the
// connection, audio included, would fail with it. The hub reads the answer first and ends only
// the subscriptions it cannot send (EventSubscribeFailed): the rest of the answer applies.

// answerCodecs returns, for each mid of an answer, the codecs its m-line accepts; a rejected
// m-line (port 0) accepts none.
func answerCodecs(answer string) (map[string][]webrtc.RTPCodecParameters, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		return nil, err
	}
	out := map[string][]webrtc.RTPCodecParameters{}
	for _, md := range d.MediaDescriptions {
		mid, ok := md.Attribute("mid")
		if !ok {
			continue
		}
		var codecs []webrtc.RTPCodecParameters
		if md.MediaName.Port.Value != 0 {
			fmtp := map[string]string{}
			for _, a := range md.Attributes {
				if a.Key == "fmtp" {
					if pt, params, ok := strings.Cut(a.Value, " "); ok {
						fmtp[pt] = params
					}
				}
			}
			for _, a := range md.Attributes {
				if a.Key != "rtpmap" {
					continue
				}
				pt, enc, ok := strings.Cut(a.Value, " ")
				if !ok {
					continue
				}
				name, _, _ := strings.Cut(enc, "/")
				codecs = append(codecs, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
					MimeType: md.MediaName.Media + "/" + name, SDPFmtpLine: fmtp[pt]}})
			}
		}
		out[mid] = codecs
	}
	return out, nil
}

// codecAccepts reports whether a remote codec can carry a track sent with c: the same MIME
// type and, for H.264, the same packetization mode (what pion needs to bind the track).
func codecAccepts(remote webrtc.RTPCodecParameters, c webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(remote.MimeType, c.MimeType) {
		return false
	}
	if !strings.EqualFold(c.MimeType, webrtc.MimeTypeH264) {
		return true
	}
	return fmtpValue(remote.SDPFmtpLine, "packetization-mode", "0") == fmtpValue(c.SDPFmtpLine, "packetization-mode", "0")
}

func fmtpValue(line, key, fallback string) string {
	for _, kv := range strings.Split(line, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return fallback
}

// refuseUnplayable ends, before the answer is applied, every RTP subscription whose m-line in
// answer accepts none of its track's codecs, and returns the events telling the subscriber.
// The caller holds negMu (an offer awaits this answer) and sends the events once the answer
// is applied, then renegotiates (the ended transceivers go inactive).
func (s *session) refuseUnplayable(answer string, pc *webrtc.PeerConnection) []*rtc.Message {
	accepts, err := answerCodecs(answer)
	if err != nil {
		return nil // pion reports the malformed answer itself
	}
	type refusal struct {
		key subKey
		sub *subscription
	}
	var refused []refusal
	s.mu.Lock()
	for key, sub := range s.subs {
		if sub.transceiver == nil {
			continue
		}
		codecs, ok := accepts[sub.transceiver.Mid()]
		if !ok {
			continue
		}
		playable := false
		for _, c := range codecs {
			if codecAccepts(c, sub.track.remote.Codec().RTPCodecCapability) {
				playable = true
				break
			}
		}
		if !playable {
			delete(s.subs, key)
			refused = append(refused, refusal{key, sub})
		}
	}
	s.mu.Unlock()
	var events []*rtc.Message
	for _, r := range refused {
		r.sub.track.removeSubscriber(s)
		if err := pc.RemoveTrack(r.sub.transceiver.Sender()); err != nil {
			s.log.Debug("remove unplayable track", "err", err)
		}
		codec := r.sub.track.remote.Codec().MimeType
		s.log.Info("subscription refused: the subscriber cannot receive its codec", "of", r.key.uid, "kind", r.key.kind, "codec", codec)
		uid := r.key.uid
		events = append(events, &rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventSubscribeFailed, UID: &uid,
			Kind: r.key.kind, Codec: codec, Error: rtc.Errorf(rtc.CodeCodecNotSupported,
				"the answer accepts no %s for user %d's %s (this browser's WebRTC cannot decode it)", codec, uid, r.key.kind)})
	}
	return events
}
