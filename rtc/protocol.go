// Package rtc holds the signalling protocol shared by the hub and its clients, and the Go
// channel client the device agent (and tests, and benchmarks) use to join a channel.
//
// The protocol is JSON over one WebSocket per user (docs/protocol.md). Each user has two
// peer connections to the hub: a publish connection the client offers (its own tracks), and a
// subscribe connection the hub offers (the tracks the client subscribed to). Each side is the
// only offerer on its connection, so there is never an offer collision.
package rtc

import (
	"encoding/json"
	"fmt"
)

// Message types.
const (
	// client → hub
	TypeJoin        = "join"
	TypePublish     = "publish"
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypeAnswer      = "answer"
	TypeRenew       = "renew"
	TypeLeave       = "leave"
	TypePing        = "ping"
	// TypeRestart asks for an ICE restart of one peer connection when its media path died
	// while the signalling socket lives on (a NAT rebinding, a dropped UDP path, a network
	// change): for the subscribe connection the hub sends a new offer with fresh ICE
	// credentials; for the publish connection the client then sends a publish offer with
	// fresh credentials itself. The reply carries fresh ICE servers either way.
	TypeRestart = "restart"
	// TypeResume, the first message on a fresh socket, continues a joined session whose
	// socket was lost or stuck (resume.go): the hub moves the session onto the new socket and
	// sends again what the old one may have lost.
	TypeResume = "resume"
	// hub → client
	TypeReply = "reply"
	TypeOffer = "offer"
	TypeEvent = "event"
)

// Events the hub sends (Message.Event).
const (
	EventUserJoined      = "user-joined"
	EventUserLeft        = "user-left"
	EventUserPublished   = "user-published"
	EventUserUnpublished = "user-unpublished"
	EventTokenWillExpire = "token-privilege-will-expire"
	EventTokenDidExpire  = "token-privilege-did-expire"
	EventReplaced        = "connection-replaced"
	// EventPublished tells a publisher that its track of Kind is live in the channel (its
	// media reached the hub and the others were told).
	EventPublished = "published"
	// EventRestartICE tells a client that the hub lost the media path of its publish
	// connection (Connection): restart ICE on it with a publish offer. (The subscribe
	// connection the hub restarts itself, with an offer.) A client may notice a dead path
	// much later than the hub, or never: when only its uplink died, media still arrives.
	EventRestartICE = "restart-ice"
	// EventSubscribeFailed tells a subscriber that its subscription to UID's Kind ended
	// because its side cannot receive it (Error: CodeCodecNotSupported, with the track's codec
	// in Codec); its other subscriptions and the connection go on.
	EventSubscribeFailed = "subscribe-failed"
	// EventChannelMoved tells every user of a channel that another hub of the cluster holds
	// it now (this hub lost its lease while it could not reach the directory); then the hub
	// closes the socket. Join again through your entry hub: it sends you to the holder.
	EventChannelMoved = "channel-moved"
)

// Transports a subscription arrives on (Message.Transport in subscribe).
const (
	// TransportRTP: RTP on a transceiver of the subscribe connection (the default).
	TransportRTP = "rtp"
	// TransportDataChannel: a video track's access units on a data channel of the subscribe
	// connection, for a browser whose WebRTC cannot decode the codec but which can decode it
	// otherwise (WebCodecs); the framing is in docs/protocol.md.
	TransportDataChannel = "datachannel"
)

// Peer connections (Message.Connection).
const (
	ConnPublish   = "publish"
	ConnSubscribe = "subscribe"
)

// Media kinds.
const (
	KindAudio = "audio"
	KindVideo = "video"
)

// Error codes carried in Error.Code.
const (
	CodeBadMessage        = "BAD_MESSAGE"
	CodeNotJoined         = "NOT_JOINED"
	CodeAlreadyJoined     = "ALREADY_JOINED"
	CodeInvalidParams     = "INVALID_PARAMS"
	CodeNoSuchUser        = "NO_SUCH_USER"
	CodeNotPublished      = "NOT_PUBLISHED"
	CodeNoPrivilege       = "NO_PRIVILEGE"
	CodeTokenMissing      = "TOKEN_MISSING"
	CodeTokenInvalid      = "TOKEN_INVALID"
	CodeTokenExpired      = "TOKEN_EXPIRED"
	CodeTokenNotYetValid  = "TOKEN_NOT_YET_VALID"
	CodeTokenWrongApp     = "TOKEN_WRONG_APP"
	CodeTokenWrongChannel = "TOKEN_WRONG_CHANNEL"
	CodeTokenWrongUID     = "TOKEN_WRONG_UID"
	CodeAppUnknown        = "APP_UNKNOWN"
	CodeNegotiation       = "NEGOTIATION_FAILED"
	CodeInternal          = "INTERNAL"
	// CodeUIDInUse: the uid is held by another session (or kept for its reconnect) and the
	// token does not name it: only a token for exactly that uid takes a uid over.
	CodeUIDInUse = "UID_IN_USE"
	// CodeRateLimited: too many messages or requests; slow down (a flood closes the session).
	CodeRateLimited = "RATE_LIMITED"
	// CodeCodecNotSupported: the subscriber's answer carries no codec the track can be sent
	// with (EventSubscribeFailed), or a data-channel subscription to a codec it cannot carry.
	CodeCodecNotSupported = "CODEC_NOT_SUPPORTED"
	// CodeRedirect: the channel runs on another hub of the cluster; Error.URL is that hub's
	// base URL (https://hub2.example:8443). Join there with the same request (the token is
	// valid on every hub); clients follow at most MaxRedirects of them.
	CodeRedirect = "REDIRECT"
	// CodeResumeUnknown refuses a resume: the hub has no such session (it ended, it never
	// was, or the client fell too far behind to be replayed): join again.
	CodeResumeUnknown = "RESUME_UNKNOWN"
)

// MaxRedirects bounds the REDIRECT replies a client follows for one join.
const MaxRedirects = 3

// MaxMessageBytes bounds one signalling message, and is the hub's WebSocket read limit (a
// larger frame closes the socket with 1009). The largest legitimate message is an SDP: a
// publish offer (audio and video: about 2.3 KiB from pion, a few KiB more with a dozen
// candidates), or the answer to a subscribe offer, which grows with each subscribed track
// (about 0.8 KiB from pion, up to about 1.5 KiB from a browser; a session has at most
// MaxSubscriptions). hub/sfu's TestMessageSizeBudget measures it.
const MaxMessageBytes = 64 << 10

// MaxSubscriptions bounds the tracks one session subscribes to, so that the answers to the
// hub's offers stay well under MaxMessageBytes.
const MaxSubscriptions = 32

// Error is a typed protocol error: a stable code and a human message.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// URL is where to join instead, with CodeRedirect: a hub's base URL.
	URL string `json:"url,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds a protocol error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// User describes a user in a channel as other users see it.
type User struct {
	UID   uint32 `json:"uid"`
	Audio bool   `json:"audio"`
	Video bool   `json:"video"`
	// AudioCodec and VideoCodec are the published tracks' codecs (MIME types, e.g. video/H264).
	AudioCodec string `json:"audioCodec,omitempty"`
	VideoCodec string `json:"videoCodec,omitempty"`
}

// TrackInfo tells a subscriber whose track arrives on a transceiver (by mid).
type TrackInfo struct {
	UID  uint32 `json:"uid"`
	Kind string `json:"kind"`
}

// ICEServer is a STUN or TURN server a client should use, as in RTCIceServer: urls such as
// turn:hub.example:3478?transport=udp, and for TURN a short-lived username and credential.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Message is the one envelope for every signalling message; which fields are set depends on Type.
type Message struct {
	Type string `json:"type"`
	// ID pairs a request with its reply (client-chosen, echoed by the hub).
	ID uint64 `json:"id,omitempty"`

	// join
	AppID   string  `json:"appId,omitempty"`
	Channel string  `json:"channel,omitempty"`
	UID     *uint32 `json:"uid,omitempty"`
	Token   string  `json:"token,omitempty"`

	// publish (offer), answer, offer (hub → client)
	SDP string `json:"sdp,omitempty"`
	// offer (hub → client): mid → whose track
	Tracks map[string]TrackInfo `json:"tracks,omitempty"`

	// subscribe / unsubscribe / events
	Kind string `json:"kind,omitempty"`
	// user-published, subscribe-failed: the track's codec (a MIME type such as video/H264)
	Codec string `json:"codec,omitempty"`
	// subscribe: TransportRTP (or empty) or TransportDataChannel
	Transport string `json:"transport,omitempty"`
	// reply to a data-channel subscribe: the label of the data channel the track arrives on
	Label string `json:"label,omitempty"`

	// restart: which peer connection (ConnPublish or ConnSubscribe)
	Connection string `json:"connection,omitempty"`

	// reply
	OK    *bool  `json:"ok,omitempty"`
	Error *Error `json:"error,omitempty"`
	// reply to join: the users already in the channel; reply to subscribe: Mid
	Users     []User `json:"users,omitempty"`
	Mid       string `json:"mid,omitempty"`
	ExpiresAt int64  `json:"expiresAt,omitempty"` // token expiry, unix seconds
	// reply to join and restart, and an ICE-restart offer: the STUN/TURN servers (with
	// fresh credentials) to create or restart peer connections with
	ICEServers []ICEServer `json:"iceServers,omitempty"`

	// event
	Event  string `json:"event,omitempty"`
	Reason string `json:"reason,omitempty"`

	// Resuming a session over a fresh socket (resume.go). join: CanResume, the client can
	// resume; reply to join: Resume, the session's secret for it; resume: Resume and Seq, the
	// last hub message the client received. Every hub message of a resumable session carries
	// its Seq (from 1); the reply to resume carries LastID, the last client message the hub
	// handled, so the client sends again the ones after it.
	CanResume bool   `json:"canResume,omitempty"`
	Resume    string `json:"resume,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
	LastID    uint64 `json:"lastId,omitempty"`
}

// ParseMessage decodes one client message and checks the fields its type needs.
// It never panics on any input; errors are *Error with CodeBadMessage or CodeInvalidParams.
func ParseMessage(b []byte) (*Message, error) {
	if len(b) > MaxMessageBytes {
		return nil, Errorf(CodeBadMessage, "message of %d bytes exceeds %d", len(b), MaxMessageBytes)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, Errorf(CodeBadMessage, "not a JSON message: %v", err)
	}
	switch m.Type {
	case TypeJoin:
		if m.AppID == "" || len(m.AppID) > 64 {
			return &m, Errorf(CodeInvalidParams, "join: appId must be 1-64 bytes")
		}
		if !validChannel(m.Channel) {
			return &m, Errorf(CodeInvalidParams, "join: channel must be 1-64 printable ASCII characters")
		}
		if len(m.Token) > 4096 {
			return &m, Errorf(CodeInvalidParams, "join: token too long")
		}
	case TypePublish, TypeAnswer:
		if m.SDP == "" {
			return &m, Errorf(CodeInvalidParams, "%s: sdp is required", m.Type)
		}
	case TypeSubscribe, TypeUnsubscribe:
		if m.UID == nil {
			return &m, Errorf(CodeInvalidParams, "%s: uid is required", m.Type)
		}
		if m.Kind != KindAudio && m.Kind != KindVideo {
			return &m, Errorf(CodeInvalidParams, "%s: kind must be audio or video", m.Type)
		}
		if m.Transport != "" && m.Transport != TransportRTP && (m.Transport != TransportDataChannel || m.Kind != KindVideo) {
			return &m, Errorf(CodeInvalidParams, "%s: transport must be rtp, or datachannel for video", m.Type)
		}
	case TypeRenew:
		if m.Token == "" {
			return &m, Errorf(CodeInvalidParams, "renew: token is required")
		}
	case TypeRestart:
		if m.Connection != ConnPublish && m.Connection != ConnSubscribe {
			return &m, Errorf(CodeInvalidParams, "restart: connection must be publish or subscribe")
		}
	case TypeResume:
		if m.Resume == "" || len(m.Resume) > 64 {
			return &m, Errorf(CodeInvalidParams, "resume: resume must be the session's 1-64 byte secret")
		}
	case TypeLeave, TypePing:
	case "":
		return &m, Errorf(CodeBadMessage, "message has no type")
	default:
		return &m, Errorf(CodeBadMessage, "unknown message type %q", m.Type)
	}
	return &m, nil
}

func validChannel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ValidChannel reports whether s is a valid channel name (1-64 printable ASCII characters).
func ValidChannel(s string) bool { return validChannel(s) }
