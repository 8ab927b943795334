// resume.go: a joined session moved to a fresh signalling socket by its client
// (docs/protocol.md, "Resuming a session"; the client's side is rtc/client_resume.go). A
// client that joins with canResume gets a secret in the join reply. When its socket is lost,
// the session does not end: it waits ResumeWait for the client, its peer connections and
// media going on. A client whose socket is only stuck (segments waiting in TCP's
// retransmission timer after a cut) resumes before the hub notices: the fresh socket preempts
// the old one. The first message on the fresh socket is resume, with the secret and the last
// hub message the client received; the session moves onto that socket, answers with the last
// client message it handled, and sends again every message after the client's last, in
// order. Each of its messages carries a sequence number for that, and the session keeps the
// last resumeKeep of them.

package sfu

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/gorilla/websocket"
)

// resumeKeep is how many of its last messages a resumable session keeps to send again; a
// client further behind is refused (RESUME_UNKNOWN) and joins again. Below sendQueue, so
// the reply and every message sent again fit in the queue.
const resumeKeep = 200

// sentMsg is a message the session sent, as written, with its sequence number.
type sentMsg struct {
	seq  uint64
	data []byte
}

// resumeReq is a fresh socket whose first message asks to resume a session.
type resumeReq struct {
	conn *websocket.Conn
	seq  uint64 // the last message the client received
	id   uint64 // the resume message's id, for the reply
}

// keepSent keeps a sent message (under sendMu).
func (s *session) keepSent(seq uint64, data []byte) {
	if len(s.sent) == resumeKeep {
		copy(s.sent, s.sent[1:])
		s.sent = s.sent[:resumeKeep-1]
	}
	s.sent = append(s.sent, sentMsg{seq, data})
}

// makeResumable gives a joined session of a client that can resume its secret.
func (s *session) makeResumable() string {
	b := make([]byte, 16)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	s.resumeTok = tok
	s.mu.Unlock()
	s.canResume.Store(true)
	s.svc.resumeMu.Lock()
	s.svc.resumable[tok] = s
	s.svc.resumeMu.Unlock()
	return tok
}

// forgetResume drops the session's secret (at teardown).
func (s *session) forgetResume() {
	s.mu.Lock()
	tok := s.resumeTok
	s.mu.Unlock()
	if tok == "" {
		return
	}
	s.svc.resumeMu.Lock()
	if s.svc.resumable[tok] == s {
		delete(s.svc.resumable, tok)
	}
	s.svc.resumeMu.Unlock()
}

// handOver runs on the session of a fresh socket whose first message is resume: it gives
// the socket to the session named, or refuses. Either way this session ends (stop); after a
// hand-over it leaves the socket alone.
func (s *session) handOver(m *rtc.Message) (stop bool) {
	s.svc.resumeMu.Lock()
	target := s.svc.resumable[m.Resume]
	s.svc.resumeMu.Unlock()
	refuse := func() bool {
		s.svc.noisy(slog.LevelInfo, s.addr, "resume refused: no such session")
		s.replyErr(m.ID, rtc.Errorf(rtc.CodeResumeUnknown, "no session to resume (it ended): join again"))
		return true
	}
	if target == nil || target == s {
		return refuse()
	}
	s.handedOver.Store(true)
	select {
	case target.resumeCh <- resumeReq{conn: s.conn, seq: m.Seq, id: m.ID}:
		return true
	case <-target.ctx.Done():
	case <-time.After(writeWait):
	}
	s.handedOver.Store(false)
	return refuse()
}

// nextConn is the socket the session goes on with after serve returned (lost: the socket
// failed), or nil when the session ends: a resume that preempted the socket, or, after a
// lost socket, one that comes within ResumeWait.
func (s *session) nextConn(lost error) *websocket.Conn {
	s.mu.Lock()
	r := s.preempted
	s.preempted = nil
	s.mu.Unlock()
	if r == nil {
		if lost == nil || s.ctx.Err() != nil || !s.canResume.Load() {
			return nil
		}
		wait := s.svc.opts.ResumeWait
		s.log.Info("signalling socket lost; waiting for the client to resume", "wait", wait, "err", lost)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case req := <-s.resumeCh:
			r = &req
		case <-t.C:
			s.log.Info("signalling not resumed in time", "wait", wait)
			s.mu.Lock()
			s.waited = wait // counts against the reconnect grace
			s.mu.Unlock()
			return nil
		case <-s.ctx.Done():
			return nil
		}
	}
	if s.ctx.Err() != nil || !s.takeOver(*r) {
		return nil
	}
	return r.conn
}

// takeOver moves the session onto r's socket: the reply (the last client message handled),
// then every message after the client's last, ahead of anything sent from now on. A client
// further behind than the messages kept is refused on that socket, and the session ends.
func (s *session) takeOver(r resumeReq) bool {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	from := len(s.sent)
	for from > 0 && s.sent[from-1].seq > r.seq {
		from--
	}
	// Needed: the messages after r.seq up to s.seq; kept: s.sent, consecutive up to s.seq.
	gone := r.seq < s.seq && (len(s.sent) == 0 || s.sent[0].seq > r.seq+1)
	if gone || r.seq > s.seq {
		e := rtc.Errorf(rtc.CodeResumeUnknown, "resume: %d messages behind, more than the %d kept: join again", s.seq-r.seq, resumeKeep)
		b, _ := json.Marshal(&rtc.Message{Type: rtc.TypeReply, ID: r.id, OK: new(bool), Error: e})
		r.conn.SetWriteDeadline(time.Now().Add(writeWait))
		r.conn.WriteMessage(websocket.TextMessage, b)
		r.conn.Close()
		s.log.Warn("resume refused: the client is too far behind", "behind", s.seq-r.seq)
		return false
	}
	for len(s.out) > 0 { // written to the old socket, or never: sent again below
		<-s.out
	}
	reply := okReply(r.id)
	reply.LastID = s.lastID
	b, _ := json.Marshal(reply)
	s.out <- b
	for _, m := range s.sent[from:] {
		s.out <- m.data
	}
	s.mu.Lock()
	s.conn = r.conn
	s.mu.Unlock()
	s.holding.Store(false)
	s.svc.resumes.Add(1)
	s.log.Info("signalling resumed on a fresh socket", "sent again", len(s.sent)-from, "last handled", s.lastID)
	return true
}
