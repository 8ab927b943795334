// session_signal.go: the session's signalling transport (the WebSocket's read and write loops,
// rate limits) and the dispatch of each request to its handler, with the replies.

package sfu

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
)

// readLoop reads conn's messages until it ends; lost is why a socket failed (no close frame,
// not ended by the session), nil otherwise.
func (s *session) readLoop(conn *websocket.Conn) (lost error) {
	// A frame larger than the largest message ends the socket (close 1009) before it is read.
	conn.SetReadLimit(rtc.MaxMessageBytes)
	s.alive(conn)
	conn.SetPongHandler(func(string) error {
		s.alive(conn)
		return nil
	})
	// Client pings count as messages; over the limit they get no pong.
	conn.SetPingHandler(func(data string) error {
		if !s.msgLimit.take(time.Now()) {
			return nil
		}
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.svc.badMessages.Add(1)
				s.svc.noisy(slog.LevelInfo, s.addr, "signalling message too large; socket closed", "uid", s.uidNow(), "limit", rtc.MaxMessageBytes)
				return nil
			}
			if s.ctx.Err() == nil && !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				s.log.Debug("signalling read ended", "err", err)
				s.setLeaveReason("timeout")
				return err
			}
			return nil
		}
		s.alive(conn)
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
			return nil
		} else if limited {
			continue
		}
		if pe != nil {
			s.svc.badMessages.Add(1)
			s.svc.noisy(slog.LevelInfo, s.addr, "bad signalling message", "uid", s.uidNow(), "err", pe)
			s.replyErr(id, pe)
			continue
		}
		if id != 0 && id <= s.lastID && s.canResume.Load() {
			continue // sent again by a resuming client, and handled already
		}
		stop := s.handle(m)
		s.lastID = max(s.lastID, id)
		if stop {
			return nil
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

// alive pushes conn's read deadline on: the client said something on it.
func (s *session) alive(conn *websocket.Conn) {
	now := time.Now()
	prev := s.heard.Swap(now.UnixNano())
	if s.holding.Swap(false) {
		s.log.Info("signalling socket heard again", "silent for", now.Sub(time.Unix(0, prev)).Round(time.Millisecond))
	}
	conn.SetReadDeadline(now.Add(s.svc.opts.PongWait))
}

// holdForMedia keeps a silent signalling socket while the session's media path still hears
// the client (rtc/liveness.go): a short cut must not end a call whose media is back.
func (s *session) holdForMedia(conn *websocket.Conn, now time.Time) {
	heard := time.Unix(0, s.heard.Load())
	s.mu.Lock()
	pub, sub := s.pub, s.sub
	s.mu.Unlock()
	if !rtc.KeepForMedia(now, heard, rtc.MediaHeard(pub, sub), s.svc.opts.PingInterval, s.svc.opts.MaxSilent) {
		return
	}
	conn.SetReadDeadline(now.Add(s.svc.opts.PongWait))
	if !s.holding.Swap(true) {
		s.log.Info("signalling socket silent but the media path hears the client: keeping the session", "silent for", now.Sub(heard).Round(time.Millisecond))
	}
}

// writeLoop writes the session's queued messages and its pings to conn until connCtx ends:
// with the session, it flushes the queue and says goodbye; with only the socket (lost, or
// replaced by a resume), it leaves the queue to the next socket. A failed write ends the
// socket (drop).
func (s *session) writeLoop(connCtx context.Context, drop context.CancelFunc, conn *websocket.Conn) {
	ping := time.NewTicker(s.svc.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-connCtx.Done():
			if s.handedOver.Load() || s.ctx.Err() == nil {
				return
			}
			// Flush what is queued (a final event or reply), then say goodbye.
			for {
				select {
				case b := <-s.out:
					conn.SetWriteDeadline(time.Now().Add(writeWait))
					if conn.WriteMessage(websocket.TextMessage, b) != nil {
						return
					}
				default:
					conn.WriteControl(websocket.CloseMessage,
						websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
					return
				}
			}
		case b := <-s.out:
			conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
				drop()
				return
			}
		case <-ping.C:
			s.holdForMedia(conn, time.Now())
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				drop()
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
	// A resumable session numbers its messages and keeps the last ones (resume.go). m may
	// be the same message broadcast to others: number a copy.
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.canResume.Load() {
		s.seq++
		mm := *m
		mm.Seq = s.seq
		m = &mm
	}
	b, err := json.Marshal(m)
	if err != nil {
		s.log.Error("encode message", "err", err)
		return
	}
	if m.Seq != 0 {
		s.keepSent(m.Seq, b)
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
	if m.Type != rtc.TypeJoin && m.Type != rtc.TypePing && m.Type != rtc.TypeResume && s.channel() == nil {
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
	case rtc.TypeResume:
		if s.channel() != nil {
			err = rtc.Errorf(rtc.CodeAlreadyJoined, "resume: this socket's session has joined; resume on a fresh socket")
			break
		}
		return s.handOver(m) // resume.go
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
