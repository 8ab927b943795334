// Package control is the device's MQTT side: the command, state, reply and
// event types of the MQTT API (docs/mqtt.md),
// their parser, the topic names, and Client, which keeps a connection to the
// broker and runs commands.
//
// Client owns the connection: it sets the will (status "offline"), announces
// "online" and re-publishes the latest state on every (re)connect, reconnects
// with jittered exponential back-off, and says "offline" when Run's context
// ends. Commands are run one at a time, in arrival order, by the Handler the
// owner supplies; each gets exactly one reply. The Handler reports state
// changes itself with PublishState (joining, joined, …) — Client does not
// publish the State a Handler returns, it only puts it in the reply.
//
// The session is clean: commands sent while a device is offline are not
// queued for it, so a stale join never starts a call long after it was asked
// for.
package control

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/internal/backoff"
)

// Handler runs one command and returns the device's state afterwards. A
// non-nil error becomes an ok:false reply carrying the error text and the
// returned state. ctx ends when the Client's Run does; a Handler must then
// return promptly.
type Handler func(ctx context.Context, cmd Command) (State, error)

// Options configure a Client.
type Options struct {
	// URL is the broker: tcp://, ssl://, tls://, ws://, wss://. Several brokers of one
	// cluster, comma-separated, are tried in order at each (re)connection: when one is down the
	// client connects to the next (fail-over, see Brokers).
	URL       string
	ID        string        // device id, the second topic level; default the host name
	Prefix    string        // first topic level; default "camagent"
	ClientID  string        // MQTT client id; default "camagent-<ID>"
	Username  string        // optional
	Password  string        // optional; never logged
	KeepAlive time.Duration // default 30 s
	// PersistentSession asks the broker to keep the subscription and queue QoS 1 commands
	// while the device is offline (they run when it reconnects; duplicate ids are still
	// answered once). Default: a clean session, where commands sent while offline are lost.
	PersistentSession bool
	// PublishQoS0 publishes the device's messages (status, state, reply, events, snapshot,
	// the will) at QoS 0 instead of 1. On a NATS cluster (docs/nats.md) a QoS 1 publish
	// is also stored in JetStream, and while the node that led that stream is dead (4–9 s
	// until another is elected) the node holds the connection 4 s and closes it; at QoS 0
	// the message goes to the subscribers at once. Under a clean session QoS 1 adds only the
	// broker's acknowledgement: a message unacknowledged when the connection drops is lost
	// either way.
	PublishQoS0 bool
	TLS         *tls.Config  // for ssl://, tls:// and wss://; nil uses the system roots
	Logger      *slog.Logger // nil discards logs
	Handler     Handler      // required

	// Secret, when set, is the device's shared command secret: a command
	// whose "secret" field does not match it is refused with ok:false
	// "unauthorized" and changes nothing. Never logged.
	Secret string
	// HomeAssistant turns on Home Assistant MQTT discovery when its Prefix
	// is set.
	HomeAssistant HomeAssistant
}

// ErrNotConnected is returned by PublishEvent while the broker is unreachable.
var ErrNotConnected = errors.New("control: not connected to the broker")

const (
	queueLen      = 16  // commands waiting to run; more are "busy"
	replyCacheLen = 256 // ids remembered for duplicate detection
	// connectTimeout bounds one broker's connection attempt (dial, TLS, CONNECT to CONNACK);
	// paho then tries the next broker of the list. A NATS node holds a CONNECT up to 4 s
	// while JetStream has no leader for the session stream and then closes it (docs/nats.md):
	// giving up sooner lets the next attempt, sent once the new leader is there, succeed.
	connectTimeout = 3 * time.Second
	ackTimeout     = 10 * time.Second // a PUBACK or SUBACK
	stableAfter    = 10 * time.Second // a connection this old resets the back-off
	offlineTimeout = 2 * time.Second  // publishing "offline" on the way out
	quiesce        = 250              // ms to let paho finish on Disconnect
	minBackoff     = 500 * time.Millisecond
	maxBackoff     = 30 * time.Second

	// Log lines about refused commands: 5 at once, then 4 a second; about
	// commands run: 20 at once, then 10 a second. The rest are counted.
	refusedLogBurst = 5
	refusedLogEvery = 250 * time.Millisecond
	commandLogBurst = 20
	commandLogEvery = 100 * time.Millisecond
)

// Client is a device's connection to the broker. Create it with New, then
// call Run once.
type Client struct {
	opts   Options
	topics Topics
	log    *slog.Logger
	broker string       // URLs without credentials, for logs
	at     atomic.Value // string: the broker of the latest connection attempt (paho tries them in order)
	pc     paho.Client
	qos    byte // of the device's publishes: 1, or 0 with Options.PublishQoS0

	queue   chan []byte   // received command payloads, in arrival order
	lost    chan error    // connection lost, from paho
	ready   chan struct{} // closed on the first connection
	running atomic.Bool
	conn    atomic.Bool // connected and announced
	replies *replyCache

	// queueMu orders onMessage's "queue or refuse" against the worker's shutdown: once
	// stopping is set (under queueMu) nothing more is queued, so every command received is
	// either run, answered from the queue's drain, or refused at once; none is left unanswered.
	queueMu  sync.Mutex
	stopping bool
	// refusedLog and commandLog bound the log lines a flood of commands
	// writes (loglimit.go): refusals, and commands run.
	refusedLog *logLimit
	commandLog *logLimit

	// stateMu orders state publishes: the latest state is always the last
	// one handed to paho, whether by PublishState or by a reconnect.
	stateMu   sync.Mutex
	state     []byte // latest State as JSON, nil before the first
	lastState *State // the same, decoded, for replies that run no handler
}

// New checks opts and returns a Client that is not yet connected.
func New(opts Options) (*Client, error) {
	if opts.Handler == nil {
		return nil, errors.New("control: Options.Handler is required")
	}
	brokers, err := Brokers(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.ID == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("control: no device id and no host name: %w", err)
		}
		opts.ID = host
	}
	if err := checkLevel("device id", opts.ID, false); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := checkLevel("topic prefix", opts.Prefix, true); err != nil {
		return nil, err
	}
	if opts.ClientID == "" {
		opts.ClientID = "camagent-" + opts.ID
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	c := &Client{
		opts:    opts,
		topics:  Topics{Prefix: opts.Prefix, ID: opts.ID},
		log:     log.With("component", "control"),
		broker:  redactedList(brokers),
		queue:   make(chan []byte, queueLen),
		lost:    make(chan error, 1),
		ready:   make(chan struct{}),
		replies: newReplyCache(replyCacheLen),

		refusedLog: newLogLimit(refusedLogBurst, refusedLogEvery),
		commandLog: newLogLimit(commandLogBurst, commandLogEvery),
	}
	c.qos = 1
	if opts.PublishQoS0 {
		c.qos = 0
	}

	c.at.Store(c.broker)
	po := paho.NewClientOptions()
	for _, b := range brokers {
		po.AddBroker(b.String())
	}
	po.SetConnectionAttemptHandler(func(b *url.URL, cfg *tls.Config) *tls.Config {
		c.at.Store(b.Redacted())
		return cfg
	})
	po.SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		SetKeepAlive(opts.KeepAlive).
		SetPingTimeout(10*time.Second).
		SetConnectTimeout(connectTimeout).
		SetProtocolVersion(4). // MQTT 3.1.1; else paho tries 3.1 after a failed first CONNECT
		SetWriteTimeout(ackTimeout).
		SetCleanSession(!opts.PersistentSession).
		SetOrderMatters(true). // arrival order; onMessage never blocks
		SetAutoReconnect(false).
		SetConnectRetry(false). // Run reconnects, with its own back-off
		SetBinaryWill(c.topics.Status(), []byte("offline"), c.qos, true).
		// A persistent session's queued commands arrive right after CONNACK,
		// before Subscribe has registered its handler; without a default
		// handler paho would drop them.
		SetDefaultPublishHandler(c.onUnrouted).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	if opts.TLS != nil {
		po.SetTLSConfig(opts.TLS)
	}
	c.pc = paho.NewClient(po)
	return c, nil
}

// cmdQoS is the QoS of the subscription to commands: 1 for a persistent session, whose
// commands the broker queues while the device is away, 0 for a clean session. In a clean
// session QoS 1 delivery adds nothing (a command in flight when the connection drops is
// lost either way, and duplicates are answered from the reply cache), while a NATS cluster
// serves a QoS 1 subscription through a JetStream consumer that it must create at every
// connection and that stops while JetStream elects new leaders after a node's death; a
// QoS 0 subscription is a plain NATS subscription (docs/nats.md).
func (c *Client) cmdQoS() byte {
	if c.opts.PersistentSession {
		return 1
	}
	return 0
}

// checkLevel rejects topic levels that would break the topic tree.
func checkLevel(what, s string, slashOK bool) error {
	switch {
	case strings.ContainsAny(s, "+#\x00"):
		return fmt.Errorf("control: %s %q must not contain +, # or NUL", what, s)
	case !slashOK && strings.Contains(s, "/"):
		return fmt.Errorf("control: %s %q must not contain /", what, s)
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return fmt.Errorf("control: %s %q must not start or end with /", what, s)
	}
	return nil
}

// Topics returns the device's topic names.
func (c *Client) Topics() Topics { return c.topics }

// Ready is closed once the client has connected, subscribed and announced
// itself for the first time.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Queued is the number of commands received and waiting to run.
func (c *Client) Queued() int { return len(c.queue) }

// Broker is the broker (without credentials) of the latest connection attempt: while
// Connected, the one the client is connected to.
func (c *Client) Broker() string { return c.at.Load().(string) }

// Connected reports whether the client is connected to the broker now.
func (c *Client) Connected() bool { return c.conn.Load() }

// Run connects and keeps the client connected until ctx ends, running
// commands as they arrive. Then it waits for the running command, publishes
// "offline" and the latest state, disconnects and returns nil. Connection
// failures are logged and retried, never returned.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("control: Run called twice")
	}
	var worker sync.WaitGroup
	worker.Add(1)
	go func() {
		defer worker.Done()
		c.work(ctx)
	}()

	attempt := 0
	var spent time.Duration // how long the failed connection attempt before took
	for {
		if attempt > 0 {
			// The back-off counts from the start of a failed attempt: one that hung until
			// the broker gave up (a NATS node waits 4 s on JetStream while it elects
			// leaders) has already waited that long, and the next node may be ready.
			d := max(backoff.Delay(minBackoff, maxBackoff, attempt-1)-spent, 0)
			c.log.Info("reconnecting", "broker", c.broker, "in", d.Round(time.Millisecond), "attempt", attempt)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				worker.Wait()
				return nil
			case <-t.C:
			}
		}
		tried := time.Now()
		if err := c.connect(ctx); err != nil {
			if ctx.Err() != nil {
				worker.Wait()
				return nil
			}
			spent = time.Since(tried)
			c.log.Warn("connect failed", "broker", c.broker, "err", err, "after", spent.Round(time.Millisecond))
			attempt++
			continue
		}
		spent = 0
		up := time.Now()
		select {
		case <-ctx.Done():
			worker.Wait() // its last reply and state go out before "offline"
			c.disconnect()
			return nil
		case err := <-c.lost:
			c.conn.Store(false)
			c.log.Warn("connection lost", "broker", c.at.Load(), "err", err, "after", time.Since(up).Round(time.Millisecond))
			if time.Since(up) >= stableAfter {
				attempt = 0
			}
			attempt++
		}
	}
}

// connect makes one connection attempt and, if it succeeds, subscribes to
// commands, announces "online" and re-publishes the latest state.
func (c *Client) connect(ctx context.Context) error {
	select { // a loss reported for an earlier connection
	case <-c.lost:
	default:
	}
	c.log.Debug("connecting", "broker", c.broker, "client_id", c.opts.ClientID)
	tok := c.pc.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		<-tok.Done() // bounded by connectTimeout
		if tok.Error() == nil {
			c.pc.Disconnect(0)
		}
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	setup := func() error {
		if err := wait(ctx, c.pc.Subscribe(c.topics.Cmd(), c.cmdQoS(), c.onMessage)); err != nil {
			return fmt.Errorf("subscribe %s: %w", c.topics.Cmd(), err)
		}
		if err := wait(ctx, c.pc.Publish(c.topics.Status(), c.qos, true, "online")); err != nil {
			return fmt.Errorf("publish online: %w", err)
		}
		for _, d := range DiscoveryMessages(c.topics, c.opts.HomeAssistant, c.opts.Secret) {
			if err := wait(ctx, c.pc.Publish(d.Topic, c.qos, true, d.Payload)); err != nil {
				return fmt.Errorf("publish Home Assistant discovery %s: %w", d.Topic, err)
			}
		}
		c.stateMu.Lock()
		var tok paho.Token
		if c.state != nil {
			tok = c.pc.Publish(c.topics.State(), c.qos, true, c.state)
		}
		c.conn.Store(true)
		c.stateMu.Unlock()
		if tok != nil {
			if err := wait(ctx, tok); err != nil {
				return fmt.Errorf("publish state: %w", err)
			}
		}
		return nil
	}
	if err := setup(); err != nil {
		c.disconnect() // "offline" again, if it can still be said
		return err
	}
	c.log.Info("connected", "broker", c.at.Load(), "client_id", c.opts.ClientID, "topics", c.opts.Prefix+"/"+c.opts.ID+"/#")
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	return nil
}

// disconnect says goodbye: "offline", the latest state, then DISCONNECT
// (after which the broker does not send the will).
func (c *Client) disconnect() {
	ctx, cancel := context.WithTimeout(context.Background(), offlineTimeout)
	defer cancel()
	c.stateMu.Lock()
	c.conn.Store(false)
	toks := []paho.Token{c.pc.Publish(c.topics.Status(), c.qos, true, "offline")}
	if c.state != nil {
		toks = append(toks, c.pc.Publish(c.topics.State(), c.qos, true, c.state))
	}
	c.stateMu.Unlock()
	for _, tok := range toks {
		if err := wait(ctx, tok); err != nil {
			c.log.Warn("publish on disconnect failed", "broker", c.broker, "err", err)
		}
	}
	c.pc.Disconnect(quiesce)
	c.log.Info("disconnected", "broker", c.broker)
}

// wait waits for a paho token, ackTimeout at most.
func wait(ctx context.Context, tok paho.Token) error {
	t := time.NewTimer(ackTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("no acknowledgement from the broker")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if sub, ok := tok.(*paho.SubscribeToken); ok {
		for topic, code := range sub.Result() {
			if code == 0x80 {
				return fmt.Errorf("broker refused subscription to %s", topic)
			}
		}
	}
	return nil
}

// onUnrouted takes messages paho has no subscription handler for yet: the
// commands a persistent session held while the device was away.
func (c *Client) onUnrouted(pc paho.Client, m paho.Message) {
	if m.Topic() != c.topics.Cmd() {
		c.log.Debug("ignoring message on unexpected topic", "topic", m.Topic())
		return
	}
	c.onMessage(pc, m)
}

// onMessage queues a command for the worker. paho calls it in order and it
// must not block, so a full queue is answered "busy". A payload over
// MaxCommandSize is answered at once and never queued or parsed: the queue
// holds only commands of a bounded size.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	payload := m.Payload()
	if len(payload) > MaxCommandSize {
		c.refusedLog.log(c.log, slog.LevelWarn, "oversized command refused", "bytes", len(payload), "limit", MaxCommandSize)
		c.reply(context.Background(), Reply{Error: errTooLarge(len(payload)).Error(), State: c.latest()}, false)
		return
	}
	c.queueMu.Lock()
	if c.stopping {
		c.queueMu.Unlock()
		c.refuseAtShutdown(payload, false)
		return
	}
	select {
	case c.queue <- payload:
		c.queueMu.Unlock()
		return
	default:
	}
	c.queueMu.Unlock()
	cmd, _ := ParseCommand(payload)
	if cmd.ID != "" {
		if r, ok := c.replies.get(cmd.ID); ok {
			c.commandLog.log(c.log, slog.LevelInfo, "duplicate command, replying again", "id", cmd.ID, "action", cmd.Action)
			c.reply(context.Background(), r, false)
			return
		}
	}
	c.refusedLog.log(c.log, slog.LevelWarn, "command queue full, replying busy", "id", cmd.ID, "action", cmd.Action)
	c.reply(context.Background(), Reply{ID: cmd.ID, Error: "busy", State: c.latest()}, false)
}

// latest returns the last published state, nil before the first.
func (c *Client) latest() *State {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.lastState
}

// ErrShuttingDown is the reply error of a command that was received but not run because
// the client is shutting down (it was still queued, or arrived after the worker stopped).
const ErrShuttingDown = "shutting down: command not run"

// work runs queued commands one at a time until ctx ends. Then it stops the queue and
// answers every command still in it with ErrShuttingDown (before Run says "offline"), so
// that each command received gets exactly one reply.
func (c *Client) work(ctx context.Context) {
	for {
		if ctx.Err() != nil { // before the queue: select picks at random among ready cases
			c.stopQueue()
			return
		}
		select {
		case <-ctx.Done():
			c.stopQueue()
			return
		case payload := <-c.queue:
			c.execute(ctx, payload)
		}
	}
}

// stopQueue stops queueing and answers every command still queued with ErrShuttingDown.
func (c *Client) stopQueue() {
	c.queueMu.Lock()
	c.stopping = true
	c.queueMu.Unlock()
	n := len(c.queue) // fixed now: nothing is queued once stopping is set
	for range n {
		c.refuseAtShutdown(<-c.queue, true)
	}
	if n > 0 {
		c.log.Info("queued commands refused at shutdown", "count", n)
	}
}

// refuseAtShutdown answers a command that will not run: a duplicate of one already
// answered gets that answer again, any other ErrShuttingDown. waitAck as for reply.
func (c *Client) refuseAtShutdown(payload []byte, waitAck bool) {
	cmd, _ := ParseCommand(payload)
	if cmd.ID != "" {
		if r, ok := c.replies.get(cmd.ID); ok {
			c.reply(context.Background(), r, false)
			return
		}
	}
	c.reply(context.Background(), Reply{ID: cmd.ID, Error: ErrShuttingDown, State: c.latest()}, waitAck)
}

// execute parses, deduplicates, runs and answers one command.
func (c *Client) execute(ctx context.Context, payload []byte) {
	cmd, err := ParseCommand(payload)
	if err != nil {
		c.refusedLog.log(c.log, slog.LevelWarn, "malformed command", "id", cmd.ID, "bytes", len(payload), "err", err)
		c.reply(ctx, Reply{ID: cmd.ID, Error: err.Error(), State: c.latest()}, true)
		return
	}
	if !c.authorized(cmd) {
		c.refusedLog.log(c.log, slog.LevelWarn, "unauthorized command", "id", cmd.ID, "action", cmd.Action)
		c.reply(ctx, Reply{ID: cmd.ID, Error: ErrUnauthorized, State: c.latest()}, true)
		return
	}
	if cmd.ID != "" {
		if r, ok := c.replies.get(cmd.ID); ok {
			c.commandLog.log(c.log, slog.LevelInfo, "duplicate command, replying again", "id", cmd.ID, "action", cmd.Action)
			c.reply(ctx, r, true)
			return
		}
	}
	c.commandLog.log(c.log, slog.LevelInfo, "command", "id", cmd.ID, "action", cmd.Action, "channel", cmd.Channel)
	start := time.Now()
	hctx, extra := withReplyExtra(ctx)
	st, err := c.call(hctx, cmd)
	r := Reply{ID: cmd.ID, OK: err == nil, State: &st, Snapshot: extra.snapshot}
	if err != nil {
		r.Error = err.Error()
		c.refusedLog.log(c.log, slog.LevelWarn, "command failed", "id", cmd.ID, "action", cmd.Action, "err", err, "took", time.Since(start).Round(time.Millisecond))
	} else {
		c.commandLog.log(c.log, slog.LevelInfo, "command done", "id", cmd.ID, "action", cmd.Action, "state", st.State, "took", time.Since(start).Round(time.Millisecond))
	}
	if cmd.ID != "" {
		c.replies.put(cmd.ID, r)
	}
	c.reply(ctx, r, true)
}

// ErrUnauthorized is the reply error of a command whose secret does not
// match the device's.
const ErrUnauthorized = "unauthorized"

// authorized checks a command's secret against Options.Secret, in constant
// time.
func (c *Client) authorized(cmd Command) bool {
	if c.opts.Secret == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(cmd.Secret), []byte(c.opts.Secret)) == 1
}

// call runs the handler, turning a panic into an error so that one bad
// command does not take the device off the network.
func (c *Client) call(ctx context.Context, cmd Command) (st State, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("command handler panicked", "id", cmd.ID, "action", cmd.Action, "panic", p)
			err = fmt.Errorf("internal error running %s", cmd.Action)
		}
	}()
	return c.opts.Handler(ctx, cmd)
}

// reply publishes r on the reply topic; wait says whether to wait for the
// broker's acknowledgement (not allowed inside a paho callback).
func (c *Client) reply(ctx context.Context, r Reply, waitAck bool) {
	b, err := json.Marshal(r)
	if err != nil {
		c.log.Error("encode reply", "id", r.ID, "err", err)
		return
	}
	tok := c.pc.Publish(c.topics.Reply(), c.qos, false, b)
	if !waitAck {
		return
	}
	if err := wait(ctx, tok); err != nil {
		c.log.Warn("publish reply failed", "id", r.ID, "err", err)
	}
}

// PublishState publishes s, retained, as the device's state, and remembers
// it to publish again after every reconnect and on shutdown. A zero Since is
// set to now. While disconnected it only remembers s and returns nil.
func (c *Client) PublishState(s State) error {
	tok, err := c.queueState(s)
	if tok == nil || err != nil {
		return err
	}
	if err := wait(context.Background(), tok); err != nil {
		return fmt.Errorf("control: publish state: %w", err)
	}
	return nil
}

// PostState is PublishState without waiting for the broker's acknowledgement: for a caller
// that must not stall on a connection the client has not yet found dead (a call's rejoin
// loop while the network is cut: a wait there held each rejoin attempt 10 s). The state is
// queued in order with the others, and retained: every reconnect publishes the latest again.
func (c *Client) PostState(s State) {
	if tok, err := c.queueState(s); err == nil && tok != nil {
		go func() {
			if err := wait(context.Background(), tok); err != nil {
				c.log.Debug("state not acknowledged", "err", err)
			}
		}()
	}
}

// queueState records s as the state and hands it to the broker connection, if up.
func (c *Client) queueState(s State) (paho.Token, error) {
	if s.Since.IsZero() {
		s.Since = time.Now().UTC()
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("control: encode state: %w", err)
	}
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.state, c.lastState = b, &s
	if !c.conn.Load() {
		return nil, nil
	}
	return c.pc.Publish(c.topics.State(), c.qos, true, b), nil
}

// PublishEvent publishes e (not retained, QoS 1). A zero Time is set to now.
// Events are not kept for later: while disconnected it returns
// ErrNotConnected.
func (c *Client) PublishEvent(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("control: encode event: %w", err)
	}
	if !c.conn.Load() {
		return ErrNotConnected
	}
	if err := wait(context.Background(), c.pc.Publish(c.topics.Events(), c.qos, false, b)); err != nil {
		return fmt.Errorf("control: publish event %s: %w", e.Event, err)
	}
	return nil
}
