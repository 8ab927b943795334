// client_resume.go: resuming a joined session on a fresh signalling socket (docs/protocol.md,
// "Resuming a session"). A short network cut leaves the socket's lost segments in TCP's
// doubling retransmission timer for seconds after the path is back, and a second cut then
// stacks on the first; the UDP media is back at once. Rather than wait the socket out, or give
// the whole session up (a rejoin: new peer connections, ICE, DTLS, a keyframe), the client
// dials a fresh socket and asks the hub to move the session onto it: the peer connections and
// the media never stop. The hub sends again what it sent since the last message the client
// received (Seq), and tells which client message it handled last (LastID), so the client
// sends again what came after it.

package rtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// DefaultResumeFor bounds a client's attempts to resume once its socket is lost (below the
// hub's wait for it, DefaultResumeWait in hub/sfu: 10 s): a path that is cut again and again
// comes back between the cuts. resumeAttempt bounds each attempt (a fresh socket on a path
// that works is up in milliseconds; on a dead one the connect times out after
// ConnectTimeout). A refused connect ends the attempts at once: the hub process is gone, and
// its sessions with it. A client that has other hubs to rejoin through (the agent with
// hubFailover) sets a shorter ResumeFor: a hub that does not answer may be dead for good.
const (
	DefaultResumeFor = 8 * time.Second
	resumeAttempt    = 3 * time.Second
)

// sentMessage is a client message the hub may not have handled yet.
type sentMessage struct {
	id   uint64
	data []byte
}

// keep holds a sent message until the hub has handled it.
func (c *Client) keep(id uint64, data []byte) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	c.outbox = append(c.outbox, sentMessage{id, data})
}

// acked drops the messages up to id: the hub handles them in order, and answered id.
func (c *Client) acked(id uint64) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	n := 0
	for n < len(c.outbox) && c.outbox[n].id <= id {
		n++
	}
	c.outbox = c.outbox[n:]
}

// forget drops message id from the messages kept: its request was answered or given up on
// (a request the caller no longer waits for is not sent again by a resume).
func (c *Client) forget(id uint64) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	for i, m := range c.outbox {
		if m.id == id {
			c.outbox = append(c.outbox[:i], c.outbox[i+1:]...)
			return
		}
	}
}

// Resumes counts the sessions this client moved to a fresh socket.
func (c *Client) Resumes() uint64 { return c.resumes.Load() }

// mayResume reports whether the socket's read error err is one a resume can repair: the
// client has joined with resume on, and the hub did not end the session itself (a close
// frame: leave, replaced, expired, moved, its shutdown).
func (c *Client) mayResume(err error) bool {
	c.mu.Lock()
	tok := c.resumeTok
	c.mu.Unlock()
	if tok == "" || c.opts.ResumeFor <= 0 || c.ctx.Err() != nil || c.moved.Load() {
		return false
	}
	// A close frame from the hub ended the session; 1006 is gorilla's name for a socket that
	// ended without one.
	var ce *websocket.CloseError
	return !errors.As(err, &ce) || ce.Code == websocket.CloseAbnormalClosure
}

// resumeInBackground starts one resume attempt beside the read loop, if none runs: the
// socket is silent while the media path lives (holdForMedia).
func (c *Client) resumeInBackground() {
	if !c.mayResume(nil) || !c.resuming.CompareAndSwap(false, true) {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.resuming.Store(false)
		c.resumeOnce(time.Now().Add(resumeAttempt), "the socket is silent while the media path lives")
	}()
}

// resume tries, for up to ResumeFor, to move the session to a fresh socket after the
// socket failed failed (why); it reports whether the session is on another socket now.
func (c *Client) resume(failed *websocket.Conn, why error) bool {
	deadline := time.Now().Add(c.opts.ResumeFor)
	for !c.resuming.CompareAndSwap(false, true) { // one in the background: let it finish
		select {
		case <-c.ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	if c.sock() != failed { // it succeeded
		c.resuming.Store(false)
		return true
	}
	defer c.resuming.Store(false)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		end := time.Now().Add(resumeAttempt)
		if end.After(deadline) {
			end = deadline
		}
		ok, final := c.resumeOnce(end, why.Error())
		if ok {
			return true
		}
		if final || time.Now().Add(wait).After(deadline) {
			c.log.Warn("signalling session not resumed", "err", why)
			return false
		}
		select {
		case <-c.ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// resumeOnce dials a fresh socket and asks the hub to move the session onto it, by
// deadline. ok: the session runs on it now (the old socket is closed, and what the hub had not
// handled is sent again); final: the hub has no such session, no retry helps.
func (c *Client) resumeOnce(deadline time.Time, why string) (ok, final bool) {
	c.mu.Lock()
	tok := c.resumeTok
	c.mu.Unlock()
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	start := time.Now()
	conn, _, err := c.dialer.DialContext(ctx, c.url, nil)
	if err != nil {
		c.log.Debug("resume: no fresh socket", "err", err)
		return false, errors.Is(err, syscall.ECONNREFUSED)
	}
	r, err := c.askResume(conn, tok, deadline)
	if err != nil {
		conn.Close()
		var pe *Error
		if errors.As(err, &pe) && pe.Code == CodeResumeUnknown {
			c.log.Warn("resume refused: the hub has no such session", "err", err)
			return false, true
		}
		c.log.Debug("resume failed", "err", err)
		return false, false
	}
	// The session is on conn now: send again what the hub had not handled, before any other
	// message, then let the read loop move over (closing the old socket ends its read).
	c.writeMu.Lock()
	c.connMu.Lock()
	old := c.conn
	c.conn = conn
	c.connMu.Unlock()
	c.acked(r.LastID)
	c.outMu.Lock()
	again := append([]sentMessage(nil), c.outbox...)
	c.outMu.Unlock()
	for _, m := range again {
		conn.SetWriteDeadline(time.Now().Add(c.opts.RequestTimeout))
		if err := conn.WriteMessage(websocket.TextMessage, m.data); err != nil {
			break // this socket failed too: its read fails, and a resume runs again
		}
	}
	c.writeMu.Unlock()
	c.alive(conn)
	old.Close()
	if c.ctx.Err() != nil { // closed meanwhile: Close saw the old socket only
		conn.Close()
	}
	c.resumes.Add(1)
	c.log.Info("signalling resumed on a fresh socket", "why", why, "took", time.Since(start).Round(time.Millisecond),
		"sent again", len(again), "last received", c.lastSeq.Load())
	return true, false
}

// askResume sends the resume request on conn and reads the hub's reply.
func (c *Client) askResume(conn *websocket.Conn, tok string, deadline time.Time) (*Message, error) {
	b, err := json.Marshal(&Message{Type: TypeResume, Resume: tok, Seq: c.lastSeq.Load()})
	if err != nil {
		return nil, err
	}
	conn.SetWriteDeadline(deadline)
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return nil, fmt.Errorf("rtc: send resume: %w", err)
	}
	conn.SetReadDeadline(deadline)
	_, data, err := conn.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("rtc: resume reply: %w", err)
	}
	var r Message
	if err := json.Unmarshal(data, &r); err != nil || r.Type != TypeReply {
		return nil, fmt.Errorf("rtc: resume: the hub answered %.80q", data)
	}
	if r.OK == nil || !*r.OK {
		if r.Error == nil {
			r.Error = Errorf(CodeInternal, "resume refused without a reason")
		}
		return nil, r.Error
	}
	conn.SetWriteDeadline(time.Time{})
	return &r, nil
}
