// Package e2e holds the end-to-end tests: a real hub (with its embedded MQTT broker) and a
// real agent in this process, talking over loopback, with pion and headless Chromium as the
// other users of the channel.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/internal/freeport"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// system is a running hub plus one agent.
type system struct {
	t        *testing.T
	hub      *hub.Hub
	agent    *agent.Agent
	agentCfg agent.Config
	baseURL  string
	speaker  string
	api      *webrtc.API
}

func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("E2E_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startSystem runs a hub on free loopback ports and an agent with synthetic devices whose
// speaker writes a WAV file; both stop when the test ends.
func startSystem(t *testing.T) *system {
	t.Helper()
	return startSystemWith(t, nil)
}

// startSystemWith is startSystem with the agent's configuration adjusted by tune.
func startSystemWith(t *testing.T, tune func(*agent.Config)) *system {
	t.Helper()
	dir := t.TempDir()
	log := testLogger(t)
	hcfg := hub.Defaults()
	hcfg.Demo = true // loopback trust: the agent and the test clients have no credentials
	hcfg.Listen = "127.0.0.1:0"
	hcfg.MQTTListen = "127.0.0.1:0"
	hcfg.StateDir = filepath.Join(dir, "hub")
	h, err := hub.New(hcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(hubCtx) }()
	select {
	case <-h.Ready():
	case err := <-hubDone:
		t.Fatalf("hub: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not start")
	}

	acfg := agent.Defaults()
	acfg.ID = "e2e-device"
	acfg.MQTT = h.BrokerURL()
	acfg.Hub = "http://" + h.Addr()
	acfg.Speaker = "wav:" + filepath.Join(dir, "speaker.wav")
	acfg.StateDir = filepath.Join(dir, "agent")
	acfg.ICELoopbackOnly = true
	acfg.MetricsListen = freeAddr(t)
	if tune != nil {
		tune(&acfg)
	}
	a, err := agent.New(acfg, log)
	if err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect to the broker")
	}
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &system{t: t, hub: h, agent: a, agentCfg: acfg, baseURL: "http://" + h.Addr(),
		speaker: filepath.Join(dir, "speaker.wav"), api: api}
	// The agent stops first, as on a real shutdown: it leaves its call and says goodbye over
	// MQTT while the hub and broker are still there.
	t.Cleanup(func() {
		for _, p := range []struct {
			name string
			stop context.CancelFunc
			done chan error
		}{{"agent", stopAgent, agentDone}, {"hub", stopHub, hubDone}} {
			p.stop()
			select {
			case err := <-p.done:
				if err != nil {
					t.Errorf("%s stopped with %v", p.name, err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s did not stop within 10 s", p.name)
			}
		}
	})
	s.waitDeviceOnline()
	return s
}

func (s *system) waitDeviceOnline() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var devs []struct {
			ID, Status string
		}
		if err := s.getJSON("/api/devices", &devs); err == nil {
			for _, d := range devs {
				if d.ID == s.agentCfg.ID && d.Status == "online" {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatal("device never appeared online in the hub's directory")
}

func (s *system) getJSON(path string, v any) error {
	resp, err := http.Get(s.baseURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// deviceReply is the agent's MQTT reply as the hub relays it.
type deviceReply struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	State struct {
		State   string   `json:"state"`
		Channel string   `json:"channel"`
		UID     uint32   `json:"uid"`
		Users   []uint32 `json:"users"`
		Error   string   `json:"error"`
	} `json:"state"`
}

// command sends an MQTT command to the device through the hub and returns its reply.
func (s *system) command(cmd map[string]any) deviceReply {
	s.t.Helper()
	b, _ := json.Marshal(cmd)
	resp, err := http.Post(s.baseURL+"/api/devices/"+s.agentCfg.ID+"/cmd", "application/json", bytes.NewReader(b))
	if err != nil {
		s.t.Fatalf("command: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("command %s: %s: %s", b, resp.Status, body)
	}
	var r deviceReply
	if err := json.Unmarshal(body, &r); err != nil {
		s.t.Fatalf("command reply %s: %v", body, err)
	}
	return r
}

// mint signs a token for the demo App with the hub's certificate.
func (s *system) mint(channel string, uid uint32, role string, ttl time.Duration, now time.Time) string {
	s.t.Helper()
	cert, _ := s.hub.Certificate("demo")
	tok, _, err := token.Mint("demo", cert, channel, uid, role, ttl, now)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// joinClient dials the hub and joins channel as uid.
func (s *system) joinClient(ctx context.Context, channel string, uid uint32) (*rtc.Client, *rtc.JoinResult) {
	s.t.Helper()
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: s.baseURL, API: s.api, Logger: testLogger(s.t)})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	res, err := c.Join(ctx, "demo", channel, uid, s.mint(channel, uid, token.RolePublisher, time.Hour, time.Now()))
	if err != nil {
		s.t.Fatalf("join %s as %d: %v", channel, uid, err)
	}
	return c, res
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var _ = fmt.Sprint

// freeAddr returns a loopback address with a port that was free a moment ago, from below
// the ephemeral range (internal/freeport).
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// agentMetrics fetches the agent's Prometheus metrics.
func (s *system) agentMetrics() string {
	s.t.Helper()
	resp, err := http.Get("http://" + s.agentCfg.MetricsListen + "/metrics")
	if err != nil {
		s.t.Fatalf("agent metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
