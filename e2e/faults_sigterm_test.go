package e2e

// SIGTERM in every call state (docs/reliability.md): idle, joining (a join command in flight
// to a hub that never answers, with commands queued behind it), rejoining (the hub gone
// mid-call), joined, leaving. Each time camagent must exit with status 0 within its stop
// timeout (systemd's TimeoutStopSec), every command it received must have exactly one reply
// on the reply topic and have run at most once (the agent's own log of each command run),
// and the retained status and state must say offline and idle.

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// stopTimeout is systemd/camagent.service's TimeoutStopSec.
const stopTimeout = 10 * time.Second

// blackHole is a TCP listener that accepts connections and never answers: a hub that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err, "listen")
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// sigtermCheck sends SIGTERM to the agent and checks how it ends: exit 0 within
// stopTimeout, retained offline and idle, and for each id in received exactly one reply
// and at most one run; ids in maybe (sent just before the signal, perhaps never
// delivered) at most one reply and one run. It returns how long the agent took to exit.
func sigtermCheck(t *testing.T, a *agentProc, w *mqWatch, brokerURL string, received, maybe []string) time.Duration {
	t.Helper()
	sent := time.Now()
	code, killed := a.p.stop(syscall.SIGTERM, stopTimeout)
	took := time.Since(sent)
	out := a.p.output()
	a.p = nil
	if killed || code != 0 {
		t.Fatalf("camagent after SIGTERM: exit %d, killed after %v: %v\n%s", code, stopTimeout, killed, out)
	}
	topic := "camagent/" + a.id + "/"
	late := watchDevice(t, brokerURL, a.id)
	defer late.c.Disconnect(0)
	late.wait(t, 0, 5*time.Second, "retained offline", func(m mqMsg) bool {
		return m.retained && m.topic == topic+"status" && m.payload == "offline"
	})
	late.wait(t, 0, 5*time.Second, "retained state idle", func(m mqMsg) bool {
		var s control.State
		return m.retained && m.topic == topic+"state" && json.Unmarshal([]byte(m.payload), &s) == nil && s.State == control.StateIdle
	})
	time.Sleep(200 * time.Millisecond) // a duplicate reply would be on its way by now
	replies := map[string][]string{}
	for _, m := range w.msgsOn(topic + "reply") {
		var r control.Reply
		if json.Unmarshal([]byte(m.payload), &r) == nil {
			replies[r.ID] = append(replies[r.ID], m.payload)
		}
	}
	for _, id := range received {
		if n := len(replies[id]); n != 1 {
			t.Errorf("command %s: %d replies, want exactly 1: %v", id, n, replies[id])
		}
	}
	for _, id := range append(received, maybe...) {
		if n := len(replies[id]); n > 1 {
			t.Errorf("command %s: %d replies: %v", id, n, replies[id])
		}
		if n := len(regexp.MustCompile(`msg=command component=control id=`+regexp.QuoteMeta(id)+` `).FindAllString(out, -1)); n > 1 {
			t.Errorf("command %s ran %d times", id, n)
		}
	}
	if t.Failed() {
		t.Logf("replies: %v", replies)
	}
	return took
}

// sendAll sends a status command for each id.
func sendAll(t *testing.T, w *mqWatch, dev string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		w.send(t, dev, `{"id":"`+id+`","action":"status"}`)
	}
}

func ids(prefix string, n int) []string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf("%s%d", prefix, i))
	}
	return s
}

// TestFaultSIGTERM: SIGTERM in each state.
func TestFaultSIGTERM(t *testing.T) {
	hubBin, agentBin := rigBinaries(t)
	exits := map[string][]time.Duration{}
	t.Cleanup(func() {
		for _, st := range []string{"idle", "joining", "rejoining", "joined", "leaving"} {
			if d, ok := exits[st]; ok {
				t.Logf("FAULT SIGTERM %s: %d repetitions; exited in p50 %v p95 %v max %v", st, len(d),
					pct(d, .5).Round(time.Millisecond), pct(d, .95).Round(time.Millisecond), pct(d, 1).Round(time.Millisecond))
			}
		}
	})
	for range faultRepeats(t, 1) {
		sigtermStates(t, hubBin, agentBin, exits)
	}
}

// sigtermStates takes one agent into each state and sends it SIGTERM there; exits gets how
// long each took to exit.
func sigtermStates(t *testing.T, hubBin, agentBin string, exits map[string][]time.Duration) {
	record := func(st string, d time.Duration) { exits[st] = append(exits[st], d) }
	newBroker := func(t *testing.T) *rigBroker {
		b := startRigBroker(t, "127.0.0.1:0")
		t.Cleanup(func() { b.stop(t) })
		return b
	}
	startAgent := func(t *testing.T, b *rigBroker, dev, hubURL string) (*agentProc, *mqWatch) {
		a := newAgentProc(t, agentBin, dev, b.url(), hubURL)
		a.logLevel = "info"
		w := watchDevice(t, b.url(), dev)
		a.start()
		w.wait(t, 0, 10*time.Second, "online", topicIs("camagent/"+dev+"/status", "online"))
		return a, w
	}

	// inCall starts a hub and an agent on a new broker and has the agent join a call.
	inCall := func(t *testing.T, dev string) (*rigBroker, *faultCall, *mqWatch) {
		b := newBroker(t)
		fc := &faultCall{broker: b.url(), dev: dev}
		fc.hub = newHubProc(t, hubBin, b.url())
		fc.hub.start()
		var w *mqWatch
		fc.agent, w = startAgent(t, b, fc.dev, fc.hub.url())
		fc.join(t)
		return b, fc, w
	}

	t.Run("idle", func(t *testing.T) {
		b := newBroker(t)
		a, w := startAgent(t, b, "e2e-term-idle", "http://127.0.0.1:9")
		done := ids("i", 3)
		sendAll(t, w, a.id, done...)
		for _, id := range done {
			w.reply(t, a.id, id, 5*time.Second)
		}
		late := ids("late", 3)
		sendAll(t, w, a.id, late...)
		record("idle", sigtermCheck(t, a, w, b.url(), done, late))
	})

	t.Run("joining", func(t *testing.T) {
		b := newBroker(t)
		a, w := startAgent(t, b, "e2e-term-joining", blackHole(t))
		w.send(t, a.id, `{"id":"j","action":"join","channel":"`+faultChannel+`"}`)
		w.wait(t, 0, 5*time.Second, "joining", stateIs("camagent/"+a.id+"/state", func(s control.State) bool { return s.State == control.StateJoining }))
		queued := ids("q", 5)
		sendAll(t, w, a.id, queued...)
		a.waitQueued(len(queued), 5*time.Second)
		record("joining", sigtermCheck(t, a, w, b.url(), append([]string{"j"}, queued...), nil))
		if r := w.reply(t, a.id, "j", time.Second); r.OK || !strings.Contains(r.Error, "shutting down") {
			t.Errorf("the join in flight: reply %+v, want ok:false, shutting down", r)
		}
		for _, id := range queued {
			if r := w.reply(t, a.id, id, time.Second); r.OK || !strings.Contains(r.Error, "shutting down") {
				t.Errorf("%s, queued behind the join: reply %+v, want ok:false, shutting down", id, r)
			}
		}
	})

	t.Run("rejoining", func(t *testing.T) {
		b, fc, w := inCall(t, "e2e-term-rejoin")
		fc.hub.stop(syscall.SIGKILL) // and not started again
		fc.agent.waitState(control.StateJoining, 10*time.Second)
		record("rejoining", sigtermCheck(t, fc.agent, w, b.url(), []string{"join-1"}, nil))
	})

	t.Run("joined", func(t *testing.T) {
		b, fc, w := inCall(t, "e2e-term-joined")
		done := ids("s", 3)
		sendAll(t, w, fc.dev, done...)
		for _, id := range done {
			w.reply(t, fc.dev, id, 5*time.Second)
		}
		late := ids("late", 3)
		sendAll(t, w, fc.dev, late...)
		record("joined", sigtermCheck(t, fc.agent, w, b.url(), append([]string{"join-1"}, done...), late))
	})

	t.Run("leaving", func(t *testing.T) {
		b, fc, w := inCall(t, "e2e-term-leaving")
		from := w.mark()
		w.send(t, fc.dev, `{"id":"l","action":"leave"}`)
		w.wait(t, from, 5*time.Second, "leaving", stateIs("camagent/"+fc.dev+"/state", func(s control.State) bool { return s.State == control.StateLeaving }))
		record("leaving", sigtermCheck(t, fc.agent, w, b.url(), []string{"join-1", "l"}, nil))
	})
}
