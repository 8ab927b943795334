package sfu

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

const (
	sendQueue    = 256
	pingInterval = 5 * time.Second
	pongWait     = 12 * time.Second // a silent client is gone after this
	writeWait    = 5 * time.Second
	gatherWait   = 5 * time.Second
	// restartAfter is how long a peer connection may stay disconnected (no packets for 3 s
	// before that) before the hub restarts its ICE; a failed one restarts at once.
	restartAfter = 2 * time.Second
	// restartMinGap is the least time between two restart requests for one connection.
	restartMinGap = time.Second
)

type subKey struct {
	uid  uint32
	kind string
}

// subscription is one forwarded track sent to one subscriber.
type subscription struct {
	track       *track
	transceiver *webrtc.RTPTransceiver // nil for a data-channel subscription
	feed        *auFeed                // a data-channel subscription's (aufeed.go)
	// fresh: the subscriber has not yet been given a keyframe request for this track.
	fresh bool
}

// session is one user: one WebSocket, its peer connections and its tracks.
type session struct {
	svc    *Service
	log    *slog.Logger
	addr   string // the client address (per-address limits, rate-limited logs)
	conn   *websocket.Conn
	out    chan []byte
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	ch        *channel
	uid       uint32
	claims    *token.Claims
	pub       *webrtc.PeerConnection
	published map[string]*track
	sub       *webrtc.PeerConnection
	subs      map[subKey]*subscription
	leaveWhy  string
	timers    []*time.Timer
	host      string // the Host header of the WebSocket request

	// Users without signalling (external.go): conn is nil, events (if set) takes what would
	// be sent, view is a WHEP viewer's connection, and noTakeover keeps a minted uid its own.
	events     func(*rtc.Message)
	view       *viewer
	noTakeover bool

	negMu          sync.Mutex
	awaitingAnswer bool
	dirty          bool
	iceRestart     bool // the next subscribe offer restarts ICE
	restartSent    bool // the offer awaiting its answer restarts ICE

	lastRestart map[string]time.Time // connection → the client's last restart request (under mu)

	// read loop only: message and request rate limits, and the flood allowance
	msgLimit, opLimit, floodLimit *bucket
}

func newSession(svc *Service, conn *websocket.Conn, remote string) *session {
	ctx, cancel := context.WithCancel(svc.ctx)
	o := svc.opts
	return &session{
		svc:        svc,
		log:        svc.log.With("remote", remote),
		addr:       remote,
		msgLimit:   newBucket(o.MessageRate, o.MessageBurst),
		opLimit:    newBucket(o.OpRate, o.OpBurst),
		floodLimit: newBucket(5, o.FloodLimit),
		conn:       conn,
		out:        make(chan []byte, sendQueue),
		ctx:        ctx,
		cancel:     cancel,
		published:  map[string]*track{},
		subs:       map[subKey]*subscription{},
		leaveWhy:   "quit",
	}
}

// run serves the session until its socket closes or the service stops, then tears it down.
func (s *session) run() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop()
	}()
	go func() {
		<-s.ctx.Done()
		// Let the writer flush what is queued (a last reply or event) before the socket closes;
		// closing it also unblocks the read loop.
		select {
		case <-writerDone:
		case <-time.After(writeWait):
		}
		s.conn.Close()
	}()
	joinBy := time.AfterFunc(s.svc.opts.JoinDeadline, func() {
		if s.channel() == nil && s.ctx.Err() == nil {
			s.svc.joinTimeouts.Add(1)
			s.svc.noisy(slog.LevelInfo, s.addr, "signalling socket closed: no join in time", "deadline", s.svc.opts.JoinDeadline)
			s.cancel()
		}
	})
	s.readLoop()
	joinBy.Stop()
	s.cancel()
	<-writerDone
	s.teardown()
}

func (s *session) readLoop() {
	// A frame larger than the largest message ends the socket (close 1009) before it is read.
	s.conn.SetReadLimit(rtc.MaxMessageBytes)
	s.conn.SetReadDeadline(time.Now().Add(pongWait))
	s.conn.SetPongHandler(func(string) error {
		return s.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	// Client pings count as messages; over the limit they get no pong.
	s.conn.SetPingHandler(func(data string) error {
		if !s.msgLimit.take(time.Now()) {
			return nil
		}
		err := s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		typ, data, err := s.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.svc.badMessages.Add(1)
				s.svc.noisy(slog.LevelInfo, s.addr, "signalling message too large; socket closed", "uid", s.uidNow(), "limit", rtc.MaxMessageBytes)
			}
			if s.ctx.Err() == nil && !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				s.log.Debug("signalling read ended", "err", err)
				s.setLeaveReason("timeout")
			}
			return
		}
		s.conn.SetReadDeadline(time.Now().Add(pongWait))
		var (
			m  *rtc.Message
			pe *rtc.Error
		)
		if typ != websocket.TextMessage {
			pe = rtc.Errorf(rtc.CodeBadMessage, "binary frames are not part of the protocol")
		} else if m, err = rtc.ParseMessage(data); err != nil {
			pe = asProtoErr(err)
		}
		var id uint64
		if m != nil {
			id = m.ID
		}
		if limited, stop := s.limit(m); stop {
			return
		} else if limited {
			continue
		}
		if pe != nil {
			s.svc.badMessages.Add(1)
			s.svc.noisy(slog.LevelInfo, s.addr, "bad signalling message", "uid", s.uidNow(), "err", pe)
			s.replyErr(id, pe)
			continue
		}
		if stop := s.handle(m); stop {
			return
		}
	}
}

// limit applies the session's rate limits to a message (m nil: not even a message). A message
// over a limit is answered RATE_LIMITED (limited); a session that keeps flooding past its
// allowance is ended (stop).
func (s *session) limit(m *rtc.Message) (limited, stop bool) {
	now := time.Now()
	ok := s.msgLimit.take(now)
	if ok && m != nil && isOperation(m.Type) {
		ok = s.opLimit.take(now)
	}
	if ok {
		return false, false
	}
	s.svc.rateLimited.Add(1)
	if !s.floodLimit.take(now) {
		s.svc.floodClosed.Add(1)
		s.svc.noisy(slog.LevelWarn, s.addr, "signalling flood; session closed", "uid", s.uidNow())
		s.setLeaveReason("timeout")
		return true, true
	}
	s.svc.noisy(slog.LevelInfo, s.addr, "signalling rate limited", "uid", s.uidNow())
	var id uint64
	if m != nil {
		id = m.ID
	}
	s.replyErr(id, rtc.Errorf(rtc.CodeRateLimited, "too many messages: slow down (at most %g messages and %g requests a second)",
		s.svc.opts.MessageRate, s.svc.opts.OpRate))
	return true, false
}

func (s *session) writeLoop() {
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-s.ctx.Done():
			// Flush what is queued (a final event or reply), then say goodbye.
			for {
				select {
				case b := <-s.out:
					s.conn.SetWriteDeadline(time.Now().Add(writeWait))
					if s.conn.WriteMessage(websocket.TextMessage, b) != nil {
						return
					}
				default:
					s.conn.WriteControl(websocket.CloseMessage,
						websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
					return
				}
			}
		case b := <-s.out:
			s.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := s.conn.WriteMessage(websocket.TextMessage, b); err != nil {
				s.cancel()
				return
			}
		case <-ping.C:
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				s.cancel()
				return
			}
		}
	}
}

// send queues a message; a user too slow to take its messages is disconnected.
func (s *session) send(m *rtc.Message) {
	if s.ctx.Err() != nil {
		return // gone (perhaps a place kept for a reconnect): nobody reads its queue
	}
	if s.conn == nil {
		s.mu.Lock()
		events := s.events
		s.mu.Unlock()
		if events != nil {
			events(m)
		}
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		s.log.Error("encode message", "err", err)
		return
	}
	select {
	case s.out <- b:
	default:
		s.log.Warn("signalling queue full, disconnecting user", "uid", s.uidNow())
		s.setLeaveReason("timeout")
		s.cancel()
	}
}

func okReply(id uint64) *rtc.Message {
	t := true
	return &rtc.Message{Type: rtc.TypeReply, ID: id, OK: &t}
}

func (s *session) replyErr(id uint64, e *rtc.Error) {
	f := false
	s.send(&rtc.Message{Type: rtc.TypeReply, ID: id, OK: &f, Error: e})
}

func asProtoErr(err error) *rtc.Error {
	var pe *rtc.Error
	if errors.As(err, &pe) {
		return pe
	}
	return rtc.Errorf(rtc.CodeInternal, "%v", err)
}

// handle runs one request; it reports whether the session should end.
func (s *session) handle(m *rtc.Message) (stop bool) {
	var (
		reply *rtc.Message
		err   error
	)
	if m.Type != rtc.TypeJoin && m.Type != rtc.TypePing && s.channel() == nil {
		s.replyErr(m.ID, rtc.Errorf(rtc.CodeNotJoined, "%s before join", m.Type))
		return false
	}
	switch m.Type {
	case rtc.TypeJoin:
		reply, err = s.join(m)
	case rtc.TypePublish:
		reply, err = s.publish(m)
	case rtc.TypeSubscribe:
		reply, err = s.subscribe(m)
	case rtc.TypeUnsubscribe:
		reply, err = s.unsubscribe(m)
	case rtc.TypeAnswer:
		if err = s.answer(m); err == nil {
			return false // an answer has no reply
		}
	case rtc.TypeRenew:
		reply, err = s.renew(m)
	case rtc.TypeRestart:
		reply, err = s.restart(m)
	case rtc.TypePing:
		reply = okReply(m.ID)
	case rtc.TypeLeave:
		s.send(okReply(m.ID))
		s.setLeaveReason("quit")
		return true
	}
	if err != nil {
		pe := asProtoErr(err)
		s.svc.noise.Log(s.log, slog.LevelInfo, s.addr, "request refused", "type", m.Type, "uid", s.uidNow(), "code", pe.Code, "err", pe.Message)
		s.replyErr(m.ID, pe)
		return false
	}
	reply.Type, reply.ID = rtc.TypeReply, m.ID
	if reply.OK == nil {
		t := true
		reply.OK = &t
	}
	s.send(reply)
	return false
}

func (s *session) channel() *channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *session) uidNow() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uid
}

func (s *session) setLeaveReason(r string) {
	s.mu.Lock()
	if s.leaveWhy == "quit" || r != "timeout" {
		s.leaveWhy = r
	}
	s.mu.Unlock()
}

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
	return &rtc.Message{UID: &uid, Users: users, ExpiresAt: claims.ExpiresAt, ICEServers: s.iceServers()}, nil
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

// publishPrivilege is the privilege publishing each media kind needs.
var publishPrivilege = map[string]string{rtc.KindAudio: token.PrivPublishAudio, rtc.KindVideo: token.PrivPublishVideo}

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

// after runs f after d unless the session has ended by then.
func (s *session) after(d time.Duration, f func()) {
	t := time.AfterFunc(d, func() {
		if s.ctx.Err() == nil {
			f()
		}
	})
	s.mu.Lock()
	s.timers = append(s.timers, t)
	s.mu.Unlock()
}

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
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(rtc.Errorf(rtc.CodeNegotiation, "publish: create answer: %v", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(rtc.Errorf(rtc.CodeNegotiation, "publish: set answer: %v", err))
	}
	if err := s.wait(gathered); err != nil {
		return nil, err
	}
	// Kinds no longer received are unpublished now; new ones are announced when media arrives.
	for _, kind := range []string{rtc.KindAudio, rtc.KindVideo} {
		if !recv[kind] {
			s.unpublishKind(kind)
		}
	}
	return &rtc.Message{SDP: pc.LocalDescription().SDP}, nil
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
	t, err := newTrack(s.svc, pc, remote, uid)
	if err != nil {
		s.log.Error("forward track", "kind", kind, "err", err)
		return
	}
	s.unpublishKind(kind) // a new stream for a kind replaces the old one
	s.mu.Lock()
	s.published[kind] = t
	s.mu.Unlock()
	s.log.Info("user published", "kind", kind, "codec", remote.Codec().MimeType)
	ch.broadcast(uid, &rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventUserPublished, UID: &uid, Kind: kind, Codec: remote.Codec().MimeType})
	s.send(&rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventPublished, Kind: kind})
	t.forward(s.ctx) // returns when the publisher's stream ends
	s.mu.Lock()
	current := s.published[kind] == t
	s.mu.Unlock()
	if current {
		s.unpublishKind(kind)
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
	tr, err := pc.AddTransceiverFromTrack(out.local, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
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

func (s *session) subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// readRTCP drains a subscriber's RTCP for one track and relays keyframe requests.
func (s *session) readRTCP(sender *webrtc.RTPSender, t *track) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		if wantsKeyframe(pkts) {
			t.requestKeyframe()
		}
		t.resendTo(s, nackedSeqs(pkts))
	}
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
		t.requestKeyframeNow()
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

// teardown removes the user from its channel, stops its tracks and closes its connections.
func (s *session) teardown() {
	s.mu.Lock()
	ch, uid, why := s.ch, s.uid, s.leaveWhy
	for _, t := range s.timers {
		t.Stop()
	}
	s.mu.Unlock()
	for _, kind := range []string{rtc.KindAudio, rtc.KindVideo} {
		s.unpublishKind(kind)
	}
	s.mu.Lock()
	subs := s.subs
	s.subs = map[subKey]*subscription{}
	pub, sub := s.pub, s.sub
	s.mu.Unlock()
	for _, x := range subs {
		x.track.removeSubscriber(s)
		if x.feed != nil {
			x.feed.close()
		}
	}
	if pub != nil {
		pub.Close()
	}
	if sub != nil {
		sub.Close()
	}
	if ch == nil {
		return
	}
	leave := func() {
		if s.svc.exit(ch, uid, s) {
			s.log.Info("user left", "reason", why)
			ch.broadcast(uid, &rtc.Message{Type: rtc.TypeEvent, Event: rtc.EventUserLeft, UID: &uid, Reason: why})
		}
	}
	if grace := s.svc.opts.ReconnectGrace; why == "timeout" && grace > 0 && s.svc.ctx.Err() == nil && s.conn != nil {
		// The connection broke without a goodbye: keep the user's place for a while, so a
		// reconnect (the agent rejoins by itself) does not look like leaving to the others.
		s.log.Info("user lost; keeping its place", "grace", grace)
		time.AfterFunc(grace, leave)
		return
	}
	leave()
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
