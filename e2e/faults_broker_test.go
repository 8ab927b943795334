package e2e

// Broker faults of the matrix (docs/reliability.md): the broker the agent and the hub share
// is stopped and started again on its port — the hub's embedded broker (hub/broker, run in
// the test process so it can restart alone), Debian's mosquitto killed with SIGKILL, and
// camhub killed with its own embedded broker inside — while a call runs and while the agent
// is idle. The call must not notice (no rejoin, the viewer's video goes on); the agent must
// be back on the broker with its retained status and state right, and answer a command.

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// restartable is a broker the test can stop and start again on the same address.
type restartable interface {
	url() string
	down(t *testing.T)
	up(t *testing.T)
}

type rigBrokerFault struct{ b *rigBroker }

func (r *rigBrokerFault) url() string       { return r.b.url() }
func (r *rigBrokerFault) down(t *testing.T) { r.b.stop(t) }
func (r *rigBrokerFault) up(t *testing.T)   { r.b = startRigBroker(t, r.b.addr) }

type mosquittoFault struct{ b *mqBroker }

func (m *mosquittoFault) url() string       { return m.b.url() }
func (m *mosquittoFault) down(t *testing.T) { m.b.kill(syscall.SIGKILL) }
func (m *mosquittoFault) up(t *testing.T)   { m.b.start(t) }

// brokerReport is one broker fault's figures: broker back → the agent's state re-published
// (seen by a subscriber that connected at once), and the round trip of a command after.
type brokerReport struct {
	name          string
	stateBack, rt []time.Duration
}

func (r *brokerReport) log(t *testing.T) {
	t.Helper()
	t.Logf("FAULT %s: %d repetitions; broker back → retained state again p50 %v p95 %v; command round trip after p50 %v p95 %v",
		r.name, len(r.stateBack), pct(r.stateBack, .5).Round(time.Millisecond), pct(r.stateBack, .95).Round(time.Millisecond),
		pct(r.rt, .5).Round(time.Millisecond), pct(r.rt, .95).Round(time.Millisecond))
}

// backOnBroker waits, from the moment the broker is back, until the agent has said "online"
// and re-published its state (want), checks that a later subscriber gets both as retained
// messages, and measures a status command's round trip. It returns the two durations and
// when "online" arrived (the agent's connection is about that old).
func backOnBroker(t *testing.T, brokerURL, dev, want string, back time.Time, seq int) (stateBack, rt time.Duration, online time.Time) {
	t.Helper()
	topic := "camagent/" + dev + "/"
	w := watchDevice(t, brokerURL, dev)
	_, on := w.wait(t, 0, 20*time.Second, "status online", topicIs(topic+"status", "online"))
	online = on.at
	_, m := w.wait(t, 0, 20*time.Second, "state "+want, stateIs(topic+"state", func(s control.State) bool { return s.State == want }))
	stateBack = m.at.Sub(back)
	// A subscriber that comes later gets both, retained.
	late := watchDevice(t, brokerURL, dev)
	late.wait(t, 0, 5*time.Second, "retained online", func(m mqMsg) bool {
		return m.retained && m.topic == topic+"status" && m.payload == "online"
	})
	late.wait(t, 0, 5*time.Second, "retained state "+want, func(m mqMsg) bool {
		var s control.State
		return m.retained && m.topic == topic+"state" && json.Unmarshal([]byte(m.payload), &s) == nil && s.State == want
	})
	id := fmt.Sprintf("status-after-%d", seq)
	sent := time.Now()
	w.send(t, dev, `{"id":"`+id+`","action":"status"}`)
	r := w.reply(t, dev, id, 10*time.Second)
	rt = time.Since(sent)
	if !r.OK || r.State == nil || r.State.State != want {
		t.Fatalf("%s: reply %+v, want ok and %s", id, r, want)
	}
	w.c.Disconnect(0)
	late.c.Disconnect(0)
	return stateBack, rt, online
}

// stableAfter is control's: a connection this old resets the reconnect back-off. Restarts
// closer together than that are a flapping broker, and the agent's back-off grows (0.5 s
// doubling to 30 s) on purpose, so a fleet does not hammer it.
const stableAfter = 10 * time.Second

// stable waits until the agent's connection, online since online (zero: no wait), has held
// stableAfter, so each repetition measures a reconnection from the first back-off step.
func stable(online time.Time) {
	if !online.IsZero() {
		time.Sleep(time.Until(online.Add(stableAfter + 500*time.Millisecond)))
	}
}

// brokerFault restarts b n times during a call: the call goes on (no rejoin, the viewer's
// video never stops for long), and the agent comes back on the broker each time.
func brokerFault(t *testing.T, name string, b restartable, n int) {
	fc := startFaultCall(t, b.url())
	r := &brokerReport{name: name}
	before := fc.agent.settled()
	sessions := fc.viewer.sessionCount()
	var online time.Time
	for i := range n {
		stable(online)
		b.down(t)
		time.Sleep(time.Second)
		downAt := time.Now()
		b.up(t)
		back := time.Now()
		fc.viewer.videoAfter(t, downAt, 5*time.Second) // the media path never depended on MQTT
		var sb, rt time.Duration
		sb, rt, online = backOnBroker(t, b.url(), fc.dev, control.StateJoined, back, i)
		r.stateBack, r.rt = append(r.stateBack, sb), append(r.rt, rt)
	}
	after := fc.agent.settled()
	r.log(t)
	t.Logf("FAULT %s: agent before: %v; after: %v", name, before, after)
	if after.Rejoins != before.Rejoins {
		t.Errorf("%s: the call rejoined %d times: a broker fault dropped it", name, after.Rejoins-before.Rejoins)
	}
	if s := fc.viewer.sessionCount(); s != sessions {
		t.Errorf("%s: the viewer had to rejoin %d times", name, s-sessions)
	}
	if gap := fc.viewer.longestGap(); gap > 2*time.Second {
		t.Errorf("%s: the viewer's video stopped for %v", name, gap)
	}
	if d := after.Goroutines - before.Goroutines; d > leakGoroutines {
		t.Errorf("%s: goroutines grew by %d", name, d)
	}
	if d := after.FDs - before.FDs; d > leakFDs {
		t.Errorf("%s: file descriptors grew by %d", name, d)
	}
}

// brokerFaultIdle restarts b n times while the agent is idle: back with state idle.
func brokerFaultIdle(t *testing.T, name string, b restartable, n int) {
	_, agentBin := rigBinaries(t)
	const dev = "e2e-faults-idle"
	a := newAgentProc(t, agentBin, dev, b.url(), "http://127.0.0.1:9") // never asked to join
	a.start()
	r := &brokerReport{name: name}
	_, _, online := backOnBroker(t, b.url(), dev, control.StateIdle, time.Now(), -1)
	for i := range n {
		stable(online)
		b.down(t)
		time.Sleep(time.Second)
		b.up(t)
		var sb, rt time.Duration
		sb, rt, online = backOnBroker(t, b.url(), dev, control.StateIdle, time.Now(), i)
		r.stateBack, r.rt = append(r.stateBack, sb), append(r.rt, rt)
	}
	r.log(t)
}

// TestFaultEmbeddedBrokerRestart: the embedded broker stops and starts again on its port,
// during a call and while idle.
func TestFaultEmbeddedBrokerRestart(t *testing.T) {
	n := faultRepeats(t, 1)
	t.Run("call", func(t *testing.T) {
		b := &rigBrokerFault{startRigBroker(t, "127.0.0.1:0")}
		t.Cleanup(func() { b.b.stop(t) })
		brokerFault(t, "embedded broker restart in a call", b, n)
	})
	t.Run("idle", func(t *testing.T) {
		b := &rigBrokerFault{startRigBroker(t, "127.0.0.1:0")}
		t.Cleanup(func() { b.b.stop(t) })
		brokerFaultIdle(t, "embedded broker restart idle", b, n)
	})
}

// TestFaultMosquittoKill: Debian's mosquitto killed with SIGKILL and started again, during a
// call and while idle (persistence off: it forgets every retained message).
func TestFaultMosquittoKill(t *testing.T) {
	n := faultRepeats(t, 1)
	t.Run("call", func(t *testing.T) {
		brokerFault(t, "mosquitto kill -9 in a call", &mosquittoFault{startMQBroker(t)}, n)
	})
	t.Run("idle", func(t *testing.T) {
		brokerFaultIdle(t, "mosquitto kill -9 idle", &mosquittoFault{startMQBroker(t)}, n)
	})
}

// TestFaultHubEmbeddedBrokerKill: camhub runs the broker itself and is killed with SIGKILL:
// the agent loses its hub and its broker at once, rejoins the call and comes back on the
// broker with state joined.
func TestFaultHubEmbeddedBrokerKill(t *testing.T) {
	n := faultRepeats(t, 1)
	hubBin, agentBin := rigBinaries(t)
	mqttAddr := freeAddr(t)
	brokerURL := "tcp://" + mqttAddr
	h := newHubProc(t, hubBin, "embedded")
	h.extra = []string{"--mqtt-listen", mqttAddr}
	h.start()
	fc := &faultCall{hub: h, broker: brokerURL, dev: "e2e-faults-hubmqtt"}
	fc.agent = newAgentProc(t, agentBin, fc.dev, brokerURL, h.url())
	fc.agent.start()
	fc.join(t)
	r := &faultReport{name: "hub with embedded broker kill -9"}
	br := &brokerReport{name: r.name}
	var online time.Time
	for i := range n {
		stable(online) // the broker dies with the hub: the same flapping rule applies
		h.stop(syscall.SIGKILL)
		time.Sleep(200 * time.Millisecond)
		back := h.start()
		at := fc.viewer.videoAfter(t, back, 20*time.Second)
		r.recover = append(r.recover, at.Sub(back))
		var sb, rt time.Duration
		sb, rt, online = backOnBroker(t, brokerURL, fc.dev, control.StateJoined, back, i)
		br.stateBack, br.rt = append(br.stateBack, sb), append(br.rt, rt)
		if i == 0 {
			r.first = fc.agent.settled()
		}
	}
	r.last = fc.agent.settled()
	r.check(t)
	br.log(t)
}
