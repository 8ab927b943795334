// client_signal.go: the client's signalling: the socket's read loop (replies, events, offers),
// requests and their replies, join and token renewal.

package rtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

// ErrHubSilent ends a client whose hub sent nothing (no message, ping or pong) for
// ReadTimeout: the path to it, or the hub, is gone though no TCP error says so yet.
var ErrHubSilent = errors.New("rtc: hub silent")

// ErrChannelMoved ends a client whose hub said the channel runs on another hub now
// (EventChannelMoved): join again through the entry hub, which redirects to the holder.
var ErrChannelMoved = errors.New("rtc: the channel moved to another hub")

// Liveness defaults (ClientOptions.PingInterval, ReadTimeout, ConnectTimeout).
const (
	DefaultPingInterval   = time.Second
	DefaultReadTimeout    = 6 * time.Second
	DefaultConnectTimeout = 2 * time.Second
)

func (o *ClientOptions) setLivenessDefaults() {
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.MaxSilent <= 0 {
		o.MaxSilent = DefaultMaxSilent
	}
}

// sock is the signalling socket now (a resume replaces it).
func (c *Client) sock() *websocket.Conn {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.conn
}

// alive pushes conn's read deadline on: the hub said something on it.
func (c *Client) alive(conn *websocket.Conn) {
	now := time.Now()
	prev := c.heard.Swap(now.UnixNano())
	if c.holding.Swap(false) {
		c.log.Info("signalling socket heard again", "silent for", now.Sub(time.Unix(0, prev)).Round(time.Millisecond))
	}
	if c.opts.PingInterval > 0 {
		conn.SetReadDeadline(now.Add(c.opts.ReadTimeout))
	}
}

// holdForMedia keeps a silent signalling socket while the media path still hears the hub
// (liveness.go), by pushing its read deadline on; it reports whether it did. A joined
// client then also tries to resume on a fresh socket (client_resume.go): the path is back,
// the old socket is only stuck in TCP's retransmission back-off.
func (c *Client) holdForMedia(now time.Time) bool {
	heard := time.Unix(0, c.heard.Load())
	if !KeepForMedia(now, heard, MediaHeard(c.PublishConnection(), c.SubscribeConnection()), c.opts.PingInterval, c.opts.MaxSilent) {
		return false
	}
	c.sock().SetReadDeadline(now.Add(c.opts.ReadTimeout))
	if !c.holding.Swap(true) {
		c.log.Info("signalling socket silent but the media path hears the hub: keeping the session", "silent for", now.Sub(heard).Round(time.Millisecond))
	}
	return true
}

// pingLoop pings the hub every PingInterval; the hub's pongs (and its own pings) keep the
// read deadline from expiring.
func (c *Client) pingLoop() {
	defer c.wg.Done()
	if c.opts.PingInterval < 0 {
		return
	}
	tick := time.NewTicker(c.opts.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		if c.holdForMedia(time.Now()) {
			c.resumeInBackground()
		}
		// WriteControl may run beside a WriteMessage (gorilla allows it); its deadline is
		// short so a socket stuck behind a cut does not hold the loop.
		err := c.sock().WriteControl(websocket.PingMessage, nil, time.Now().Add(c.opts.PingInterval))
		if err != nil && c.ctx.Err() == nil && !errors.Is(err, websocket.ErrCloseSent) {
			c.log.Debug("signalling ping not sent", "err", err)
		}
	}
}

// watch sets conn's handlers: the hub's pongs and pings are signs of life.
func (c *Client) watch(conn *websocket.Conn) {
	c.alive(conn)
	conn.SetPongHandler(func(string) error { c.alive(conn); return nil })
	conn.SetPingHandler(func(data string) error {
		c.alive(conn)
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.opts.RequestTimeout))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
			return nil // the read side decides when the socket is dead
		}
		return err
	})
}

// lost is why the socket's read ended with err, as the client's end.
func (c *Client) lost(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		silent := time.Since(time.Unix(0, c.heard.Load())).Round(100 * time.Millisecond)
		c.log.Warn("hub silent: signalling connection given up", "silent for", silent)
		return fmt.Errorf("%w for %s (no message, ping or pong): %v", ErrHubSilent, silent, err)
	}
	if c.moved.Load() {
		return fmt.Errorf("%w: signalling connection closed: %v", ErrChannelMoved, err)
	}
	return fmt.Errorf("rtc: signalling connection closed: %w", err)
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.events)
	conn := c.sock()
	c.watch(conn)
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if now := c.sock(); now != conn { // a resume moved the session to a fresh socket
				conn = now
				c.watch(conn)
				continue
			}
			why := c.lost(err)
			if c.mayResume(err) && c.resume(conn, why) {
				conn = c.sock()
				c.watch(conn)
				continue
			}
			c.cancel(why)
			return
		}
		c.alive(conn)
		var m Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.log.Warn("hub sent a message that is not JSON", "err", err)
			continue
		}
		if m.Seq != 0 {
			if m.Seq <= c.lastSeq.Load() {
				continue // sent again after a resume, and already handled
			}
			c.lastSeq.Store(m.Seq)
		}
		switch m.Type {
		case TypeReply:
			c.acked(m.ID)
			c.mu.Lock()
			ch := c.pending[m.ID]
			delete(c.pending, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- &m
			} else if m.Error != nil {
				c.log.Warn("hub reported an error", "code", m.Error.Code, "msg", m.Error.Message)
			}
		case TypeOffer:
			select {
			case c.offers <- &m:
			case <-c.ctx.Done():
				return
			}
		case TypeEvent:
			if m.Event == EventRestartICE {
				c.lostAtHub(m.Connection)
				continue
			}
			if m.Event == EventChannelMoved {
				c.log.Info("the channel moved to another hub: the hub closes this session", "reason", m.Reason)
				c.moved.Store(true)
			}
			if m.Event == EventPublished {
				c.mu.Lock()
				if ch := c.live[m.Kind]; ch != nil {
					close(ch)
					delete(c.live, m.Kind)
				}
				c.mu.Unlock()
				continue
			}
			select {
			case c.events <- &m:
			default:
				c.log.Warn("event dropped: nobody reads events", "event", m.Event)
			}
		}
	}
}

// write sends m with the next message id (its reply, if any, goes to reply). A joined,
// resumable client keeps it until the hub has handled it, and a socket that fails to take
// it is not an error: the resume sends it again (client_resume.go).
func (c *Client) write(m *Message, reply chan *Message) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	c.nextID++
	m.ID = c.nextID
	if reply != nil {
		c.pending[m.ID] = reply
	}
	resumable := c.resumeTok != "" && c.opts.ResumeFor > 0
	c.mu.Unlock()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if resumable {
		c.keep(m.ID, b)
	}
	conn := c.sock()
	conn.SetWriteDeadline(time.Now().Add(c.opts.RequestTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		if resumable && c.ctx.Err() == nil {
			c.log.Debug("signalling message not sent: kept for a resume", "type", m.Type, "err", err)
			return nil
		}
		return fmt.Errorf("rtc: send %s: %w", m.Type, err)
	}
	return nil
}

// request sends m and waits for its reply; a refused request returns the hub's *Error.
func (c *Client) request(ctx context.Context, m *Message) (*Message, error) {
	ch := make(chan *Message, 1)
	defer func() {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
		c.forget(m.ID) // answered, or given up: a resume must not send it again
	}()
	if err := c.write(m, ch); err != nil {
		return nil, err
	}
	timer := time.NewTimer(c.opts.RequestTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.OK == nil || !*r.OK {
			if r.Error == nil {
				r.Error = Errorf(CodeInternal, "request refused without a reason")
			}
			return r, r.Error
		}
		return r, nil
	case <-timer.C:
		return nil, fmt.Errorf("rtc: %s: no reply from hub in %s", m.Type, c.opts.RequestTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, context.Cause(c.ctx)
	}
}

// JoinResult is what the hub says on a successful join.
type JoinResult struct {
	UID       uint32
	Users     []User
	ExpiresAt time.Time
	// ICEServers are the STUN/TURN servers the hub handed out (with their credentials).
	ICEServers []ICEServer
}

// Join enters a channel. uid 0 asks the hub to assign one.
func (c *Client) Join(ctx context.Context, appID, channel string, uid uint32, tok string) (*JoinResult, error) {
	m := &Message{Type: TypeJoin, AppID: appID, Channel: channel, Token: tok, CanResume: c.opts.ResumeFor > 0}
	if uid != 0 {
		m.UID = &uid
	}
	r, err := c.request(ctx, m)
	if err != nil {
		return nil, err
	}
	res := &JoinResult{Users: r.Users, ExpiresAt: time.Unix(r.ExpiresAt, 0), ICEServers: r.ICEServers}
	if r.UID != nil {
		res.UID = *r.UID
	}
	c.setICEServers(r.ICEServers)
	if r.Resume != "" {
		c.mu.Lock()
		c.resumeTok = r.Resume
		c.mu.Unlock()
	}
	return res, nil
}

// RenewToken extends the session with a new token.
func (c *Client) RenewToken(ctx context.Context, tok string) (time.Time, error) {
	r, err := c.request(ctx, &Message{Type: TypeRenew, Token: tok})
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(r.ExpiresAt, 0), nil
}
