// Package agent is the device's supervisor: it wires the MQTT control plane (control), the
// channel client (rtc) and the media devices (device/…) together. Commands are executed one at
// a time by the control client's worker; a call, once joined, supervises itself (it rejoins
// after a hub or network failure) until a leave command or shutdown ends it.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Agent is the device daemon.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	api     *webrtc.API
	hubTLS  *tls.Config  // wss:// to the hub (hubCA)
	hubHTTP *http.Client // the hub's token service (hubCA)
	ctrl    *control.Client
	metrics metrics
	ctl     ControlConfig // MQTT TLS, command secret, Home Assistant, stats (control.go)
	// counters count what the PeerConnections send (sendcounters.go)
	counters *sendCounters

	mu    sync.Mutex
	call  *call
	state control.State

	// Watchdog (see LastHeartbeat): unix nanoseconds of the last heartbeat, and of the
	// start of the command running now (0: none).
	beat      atomic.Int64
	busySince atomic.Int64
	// privacy is privacy mode (privacy.go): kept in the state directory, stamped on
	// every state.
	privacy atomic.Bool

	// cmds gates the command handler at shutdown (see Run): once closed, a command running
	// is cancelled and waited for, and later ones are refused.
	cmds commandGate
	// ended takes the calls that cannot go on (gaveUp); Run ends them.
	ended chan endedCall
}

// endedCall is a call that gave up, and why.
type endedCall struct {
	c   *call
	why error
}

// ErrShuttingDown is the answer to a command that arrives, or is running, while the agent
// shuts down: it was not executed (or was abandoned before it changed anything lasting).
var ErrShuttingDown = errors.New("the agent is shutting down")

// commandGate lets commands run until it is closed.
type commandGate struct {
	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
	ctx     context.Context // cancelled by close
	cancel  context.CancelFunc
}

func (g *commandGate) init() { g.ctx, g.cancel = context.WithCancel(context.Background()) }

// enter admits one command, with a context that also ends when the gate closes; false
// once closed. The caller calls done when the command has finished.
func (g *commandGate) enter(ctx context.Context) (context.Context, func(), bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, nil, false
	}
	g.running.Add(1)
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(g.ctx, cancel)
	return cctx, func() { stop(); cancel(); g.running.Done() }, true
}

// close refuses further commands, cancels the running one and waits for it to return.
func (g *commandGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.running.Wait()
}

// heartbeatEvery is how often Run's heartbeat checks the agent's health.
const heartbeatEvery = 500 * time.Millisecond

// LastHeartbeat is when the agent last proved its command path healthy: its state lock was
// free and no command had been running longer than JoinTimeout plus 10 s. A supervisor
// (the systemd watchdog) pings only while this is recent, so a deadlocked or hung agent is
// restarted. It is zero before Run.
func (a *Agent) LastHeartbeat() time.Time {
	n := a.beat.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// heartbeat updates LastHeartbeat until ctx ends.
func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		a.mu.Lock() // a deadlock here stops the beats
		a.mu.Unlock()
		now := time.Now()
		if b := a.busySince.Load(); b == 0 || now.Sub(time.Unix(0, b)) < a.cfg.JoinTimeout+10*time.Second {
			a.beat.Store(now.UnixNano())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// New prepares an agent from a configuration.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: invalid configuration:\n%w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	counters := newSendCounters() // for the stats event (sendcounters.go)
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: cfg.ICELoopbackOnly, Interceptors: []interceptor.Factory{counters}, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	hubTLS, err := HubTLS(cfg.HubCA)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	hubHTTP := hubHTTPClient(hubTLS, 0) // requests carry their own deadlines
	a := &Agent{cfg: cfg, log: log.With("component", "agent"), api: api, counters: counters,
		hubTLS: hubTLS, hubHTTP: hubHTTP,
		ctl: cfg.ControlConfig, state: control.State{State: "idle", Since: time.Now().UTC()}}
	a.cmds.init()
	a.ended = make(chan endedCall, 1)
	for _, o := range opts {
		o(a)
	}
	a.loadPrivacy()
	for _, w := range cfg.Warnings() {
		a.log.Warn("insecure transport allowed", "problem", w)
	}
	copts, err := a.controlOptions(control.Options{
		URL: cfg.MQTT, ID: cfg.ID, Prefix: cfg.MQTTPrefix,
		Username: cfg.MQTTUsername, Password: cfg.MQTTPassword,
		Logger: log, Handler: a.handle,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: invalid configuration:\n%w", err)
	}
	a.ctrl, err = control.New(copts)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return a, nil
}

// Ready is closed once the agent has connected to its broker for the first time.
func (a *Agent) Ready() <-chan struct{} { return a.ctrl.Ready() }

// State returns the current state.
func (a *Agent) State() control.State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Run serves commands until ctx ends; then it stops taking commands (one running is
// cancelled and answered), leaves any call, publishes its final state and disconnects. It
// returns once every goroutine it started has ended.
func (a *Agent) Run(ctx context.Context) error {
	a.ctrl.PublishState(a.State())
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	done := make(chan error, 1)
	wg.Go(func() { done <- a.ctrl.Run(runCtx) })
	wg.Go(func() { a.heartbeat(runCtx) })
	if a.cfg.MetricsListen != "" {
		wg.Go(func() {
			if err := a.serveMetrics(runCtx, a.cfg.MetricsListen); err != nil {
				a.log.Error("metrics endpoint stopped", "err", err)
			}
		})
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case e := <-a.ended:
			a.endCall(e.c, e.why)
		case err := <-done:
			a.cmds.close()
			a.leave("control client stopped")
			return err
		}
	}
	// Shutdown: answer the running command first (its reply and the last state must
	// reach the broker while MQTT is still up), then leave the call.
	a.cmds.close()
	a.leave("shutdown")
	cancel()
	return <-done
}

func (a *Agent) setState(s control.State) {
	s = a.recordState(s)
	if err := a.ctrl.PublishState(s); err != nil {
		a.log.Debug("publish state", "err", err)
	}
}

// postState is setState without waiting for the broker's acknowledgement (control.PostState):
// a call's rejoin loop uses it, so a network cut that MQTT has not noticed yet does not hold
// each rejoin attempt for the acknowledgement's timeout.
func (a *Agent) postState(s control.State) { a.ctrl.PostState(a.recordState(s)) }

func (a *Agent) recordState(s control.State) control.State {
	s.Since = time.Now().UTC()
	s.Privacy = a.privacy.Load()
	a.mu.Lock()
	a.state = s
	a.mu.Unlock()
	return s
}

func (a *Agent) event(e control.Event) {
	e.Time = time.Now().UTC()
	if err := a.ctrl.PublishEvent(e); err != nil {
		a.log.Debug("publish event", "event", e.Event, "err", err)
	}
}

// handle executes one command (called by the control client, one at a time).
func (a *Agent) handle(ctx context.Context, cmd control.Command) (control.State, error) {
	ctx, done, ok := a.cmds.enter(ctx)
	if !ok {
		return a.State(), ErrShuttingDown
	}
	defer done()
	a.busySince.Store(time.Now().UnixNano())
	defer a.busySince.Store(0)
	switch cmd.Action {
	case "join":
		if a.privacy.Load() {
			a.metrics.command(cmd.Action, ErrPrivacy)
			return a.State(), ErrPrivacy
		}
		err := a.join(ctx, cmd)
		a.metrics.command(cmd.Action, err)
		return a.State(), err
	case "leave":
		a.leave("command")
		a.metrics.command(cmd.Action, nil)
		return a.State(), nil
	case "status":
		return a.State(), nil
	case control.ActionSnapshot:
		err := a.snapshot(ctx, cmd)
		a.metrics.command(cmd.Action, err)
		return a.State(), err
	case control.ActionPrivacy:
		err := a.setPrivacy(*cmd.On) // ParseCommand requires "on"
		a.metrics.command(cmd.Action, err)
		return a.State(), err
	}
	return a.State(), fmt.Errorf("unknown action %q", cmd.Action)
}

func (a *Agent) join(ctx context.Context, cmd control.Command) error {
	// The server names one of the configured hubs or the join is refused before anything
	// happens: no connection, no credential sent, the current call untouched.
	hub, err := a.cfg.hubFor(cmd.Server)
	if err != nil {
		return err
	}
	p := joinParams{
		appID: a.cfg.AppID, channel: cmd.Channel, uid: a.cfg.DefaultUID(),
		token: cmd.Token, hub: hub,
	}
	if cmd.AppID != "" {
		p.appID = cmd.AppID
	}
	if cmd.UID != nil && *cmd.UID != 0 {
		p.uid = *cmd.UID
	}
	a.mu.Lock()
	cur := a.call
	a.mu.Unlock()
	if cur != nil && cur.p.sameChannel(p) && a.State().State == "joined" {
		return nil // already there
	}
	if cur != nil {
		a.leave("switching channel")
	}
	a.setState(control.State{State: "joining", Channel: p.channel, UID: p.uid})
	jctx, cancel := context.WithTimeout(ctx, a.cfg.JoinTimeout)
	defer cancel()
	c, err := a.startCall(jctx, p)
	if err != nil && a.cmds.ctx.Err() != nil {
		// Shutdown cancelled the join: nothing failed, and Run reports idle next.
		a.log.Info("join abandoned: shutting down", "channel", p.channel)
		return ErrShuttingDown
	}
	if err != nil {
		a.log.Warn("join failed", "channel", p.channel, "err", err)
		a.setState(control.State{State: "error", Channel: p.channel, UID: p.uid, Error: err.Error()})
		a.event(control.Event{Event: "error", Channel: p.channel, Error: err.Error()})
		return err
	}
	a.mu.Lock()
	a.call = c
	a.mu.Unlock()
	return nil
}

// gaveUp hands a call that cannot go on to Run, which ends it (the call's own goroutines
// cannot: stopping it waits for them).
func (a *Agent) gaveUp(c *call, why error) {
	select {
	case a.ended <- endedCall{c, why}:
	default: // Run is gone, or busy ending calls: leave and shutdown end it
	}
}

// endCall ends c, if it is still the current call, and reports why in an error state and
// event: the camera and microphone close, and the agent waits for a command.
func (a *Agent) endCall(c *call, why error) {
	a.mu.Lock()
	if a.call != c {
		a.mu.Unlock()
		return // already left or replaced
	}
	a.call = nil
	a.mu.Unlock()
	c.stop()
	msg := why.Error() + ": the call ended; send a join with a new token"
	a.log.Warn("call ended", "channel", c.p.channel, "err", why)
	a.setState(control.State{State: "error", Channel: c.p.channel, UID: c.p.uid, Error: msg})
	a.event(control.Event{Event: "error", Channel: c.p.channel, Error: msg})
}

// leave ends the current call, if any, and reports idle.
func (a *Agent) leave(why string) {
	a.mu.Lock()
	c := a.call
	a.call = nil
	a.mu.Unlock()
	if c == nil {
		if a.State().State != "idle" {
			a.setState(control.State{State: "idle"})
		}
		return
	}
	a.setState(control.State{State: "leaving", Channel: c.p.channel, UID: c.p.uid})
	c.stop()
	a.log.Info("left channel", "channel", c.p.channel, "why", why)
	a.setState(control.State{State: "idle"})
}

// errorf wraps an error with what the agent was doing.
func errorf(what string, err error) error {
	if err == nil {
		return nil
	}
	var pe *rtc.Error
	if errors.As(err, &pe) {
		return &hubRefusal{text: fmt.Sprintf("%s: refused by hub: %s (%s)", what, pe.Message, pe.Code), pe: pe}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// hubRefusal words a protocol error for MQTT replies and keeps it for errors.As.
type hubRefusal struct {
	text string
	pe   *rtc.Error
}

func (r *hubRefusal) Error() string { return r.text }
func (r *hubRefusal) Unwrap() error { return r.pe }
