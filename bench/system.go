package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// env is what a measurement talks to: a hub (its web address and MQTT broker), and the
// pion API the bench's own users share.
type env struct {
	hubURL string // http://127.0.0.1:port
	broker string // tcp://127.0.0.1:port
	appID  string
	api    *webrtc.API
	log    *slog.Logger
}

// inProcess is a hub and an agent running in this process (so their clocks are the bench's).
type inProcess struct {
	env
	agentID string
	stop    func()
}

// startInProcess runs a hub on free loopback ports and an agent with the synthetic camera and
// microphone and a WAV speaker in dir. stop ends the agent, then the hub.
func startInProcess(ctx context.Context, dir string, log *slog.Logger) (*inProcess, error) {
	hcfg := hub.Defaults()
	hcfg.Demo = true // loopback trust: the agent and the test clients have no credentials
	hcfg.Listen, hcfg.MQTTListen = "127.0.0.1:0", "127.0.0.1:0"
	hcfg.StateDir = filepath.Join(dir, "hub")
	h, err := hub.New(hcfg, log)
	if err != nil {
		return nil, err
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(hubCtx) }()
	select {
	case <-h.Ready():
	case err := <-hubDone:
		stopHub()
		return nil, fmt.Errorf("hub: %w", err)
	case <-time.After(10 * time.Second):
		stopHub()
		return nil, errors.New("hub did not start in 10 s")
	}
	acfg := agent.Defaults()
	acfg.ID = "bench-device"
	acfg.MQTT = h.BrokerURL()
	acfg.Hub = "http://" + h.Addr()
	acfg.Speaker = "wav:" + filepath.Join(dir, "speaker.wav")
	acfg.StateDir = filepath.Join(dir, "agent")
	acfg.ICELoopbackOnly = true
	a, err := agent.New(acfg, log)
	if err != nil {
		stopHub()
		<-hubDone
		return nil, err
	}
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	stop := func() {
		stopAgent()
		<-agentDone
		stopHub()
		<-hubDone
	}
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		stop()
		return nil, errors.New("agent did not connect to the broker in 10 s")
	}
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		stop()
		return nil, err
	}
	return &inProcess{env: env{hubURL: "http://" + h.Addr(), broker: h.BrokerURL(), appID: "demo", api: api, log: log},
		agentID: acfg.ID, stop: stop}, nil
}

// token asks the hub's token service (open on loopback) for a token.
func (e *env) token(ctx context.Context, channel string, uid uint32, role string) (string, error) {
	body, _ := json.Marshal(map[string]any{"appId": e.appID, "channel": channel, "uid": uid, "role": role, "expireSeconds": 3600})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.hubURL+"/api/token", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var r struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Token == "" {
		return "", fmt.Errorf("token: %s", resp.Status)
	}
	return r.Token, nil
}

// join dials the hub and joins channel as uid with tok.
func (e *env) join(ctx context.Context, channel string, uid uint32, tok string) (*rtc.Client, *rtc.JoinResult, error) {
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: e.hubURL, API: e.api, Logger: e.log})
	if err != nil {
		return nil, nil, err
	}
	res, err := c.Join(ctx, e.appID, channel, uid, tok)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("join %s as %d: %w", channel, uid, err)
	}
	return c, res, nil
}

// joinWithToken mints a token and joins.
func (e *env) joinWithToken(ctx context.Context, channel string, uid uint32) (*rtc.Client, *rtc.JoinResult, error) {
	tok, err := e.token(ctx, channel, uid, "publisher")
	if err != nil {
		return nil, nil, err
	}
	return e.join(ctx, channel, uid, tok)
}

// commander publishes device commands on camagent/<id>/cmd and collects the replies, as any
// MQTT client of the device would (straight to the broker, not through the hub's HTTP API).
type commander struct {
	c       paho.Client
	prefix  string
	mu      sync.Mutex
	waiting map[string]chan reply
	seq     atomic.Uint64
}

type reply struct {
	at    time.Time
	OK    bool   `json:"ok"`
	ID    string `json:"id"`
	Error string `json:"error"`
	State struct {
		State string `json:"state"`
		UID   uint32 `json:"uid"`
	} `json:"state"`
}

func newCommander(broker, deviceID string) (*commander, error) {
	cm := &commander{prefix: "camagent/" + deviceID + "/", waiting: map[string]chan reply{}}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("cambench-%d", time.Now().UnixNano())).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	cm.c = paho.NewClient(o)
	if t := cm.c.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("mqtt connect %s: %v", broker, t.Error())
	}
	t := cm.c.Subscribe(cm.prefix+"reply", 1, func(_ paho.Client, m paho.Message) {
		var r reply
		if json.Unmarshal(m.Payload(), &r) != nil {
			return
		}
		r.at = time.Now()
		cm.mu.Lock()
		ch := cm.waiting[r.ID]
		delete(cm.waiting, r.ID)
		cm.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	})
	if !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		cm.c.Disconnect(0)
		return nil, fmt.Errorf("mqtt subscribe: %v", t.Error())
	}
	return cm, nil
}

// send publishes a command and returns when it left (sent) and a channel for its reply.
func (cm *commander) send(cmd map[string]any) (sent time.Time, replies <-chan reply, err error) {
	id := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), cm.seq.Add(1))
	cmd["id"] = id
	b, _ := json.Marshal(cmd)
	ch := make(chan reply, 1)
	cm.mu.Lock()
	cm.waiting[id] = ch
	cm.mu.Unlock()
	sent = time.Now()
	t := cm.c.Publish(cm.prefix+"cmd", 1, false, b)
	if !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		return sent, nil, fmt.Errorf("mqtt publish: %v", t.Error())
	}
	return sent, ch, nil
}

// do sends a command and waits for its reply.
func (cm *commander) do(ctx context.Context, cmd map[string]any) (reply, error) {
	_, ch, err := cm.send(cmd)
	if err != nil {
		return reply{}, err
	}
	select {
	case r := <-ch:
		if !r.OK {
			return r, fmt.Errorf("device refused %v: %s", cmd["action"], r.Error)
		}
		return r, nil
	case <-time.After(20 * time.Second):
		return reply{}, fmt.Errorf("no reply to %v in 20 s", cmd["action"])
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// awaitDevice asks for the device's status until it answers.
func (cm *commander) awaitDevice(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, ch, err := cm.send(map[string]any{"action": "status"})
		if err != nil {
			return err
		}
		select {
		case <-ch:
			return nil
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("device did not answer status in %s", timeout)
		}
	}
}

func (cm *commander) close() { cm.c.Disconnect(100) }

// waitEvent reads c's events until match returns true.
func waitEvent(ctx context.Context, c *rtc.Client, timeout time.Duration, match func(*rtc.Message) bool) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m, ok := <-c.Events():
			if !ok {
				return time.Time{}, fmt.Errorf("client ended: %v", c.Err())
			}
			if match(m) {
				return time.Now(), nil
			}
		case <-t.C:
			return time.Time{}, fmt.Errorf("event not seen in %s", timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func isEvent(ev string, uid uint32, kind string) func(*rtc.Message) bool {
	return func(m *rtc.Message) bool {
		return m.Event == ev && m.UID != nil && *m.UID == uid && (kind == "" || m.Kind == kind)
	}
}

// quietLogger keeps the hub's, agent's and clients' logs out of the table: a failure that
// matters comes back as an error of the measurement. verbose shows everything.
func quietLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelError + 4
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func newAPI() (*webrtc.API, error) { return rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true}) }
