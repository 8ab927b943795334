package rtc

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// A signalling socket that falls silent while the media path still hears the other end is
// kept (up to DefaultMaxSilent): a short network cut leaves TCP's lost segments waiting in its
// doubling retransmission timer for several seconds after the path is back, while the UDP
// media flows again at once, and tearing the call down then would turn a 2 s cut into a
// rejoin. Both ends apply the rule: the client here, the hub in hub/sfu.
const (
	// DefaultMaxSilent bounds how long a silent socket is kept for a live media path.
	DefaultMaxSilent = 20 * time.Second
	// The media path counts as alive if it heard the other end within mediaFreshPings ping
	// intervals, and at least minMediaFresh: a publisher may hear nothing but the RTCP
	// receiver reports, which come every second.
	mediaFreshPings = 3
	minMediaFresh   = 3 * time.Second
)

// MediaHeard returns when any of the peer connections (nil ones are skipped) last received
// a packet from its remote end on its selected candidate pair: media, RTCP or DTLS, the
// media path's own sign of life (ICE checks do not count). Zero if none has.
func MediaHeard(pcs ...*webrtc.PeerConnection) time.Time {
	var last time.Time
	for _, pc := range pcs {
		if pc == nil {
			continue
		}
		for _, tr := range pc.GetTransceivers() {
			var dt *webrtc.DTLSTransport
			if s := tr.Sender(); s != nil {
				dt = s.Transport()
			}
			if dt == nil && tr.Receiver() != nil {
				dt = tr.Receiver().Transport()
			}
			if dt == nil {
				continue
			}
			if st, ok := dt.ICETransport().GetSelectedCandidatePairStats(); ok {
				if t := st.LastPacketReceivedTimestamp.Time(); t.After(last) {
					last = t
				}
			}
			break // one transport per connection (bundled)
		}
	}
	return last
}

// KeepForMedia reports whether a signalling socket silent since heard should be kept at
// now: it has been silent for more than two pings but at most maxSilent, and the media
// path heard the other end lately (three pings, at least 3 s).
func KeepForMedia(now, heard, media time.Time, ping, maxSilent time.Duration) bool {
	silent := now.Sub(heard)
	fresh := max(mediaFreshPings*ping, minMediaFresh)
	return silent > 2*ping && silent <= maxSilent && now.Sub(media) <= fresh
}
