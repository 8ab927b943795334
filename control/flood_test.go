package control_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// TestOversizedCommand: a payload over MaxCommandSize is refused with ok:false, an empty id
// and the limit, whatever it says (here a well-formed join to another channel); the handler
// never runs, the device's state does not move, and the next valid command is served.
func TestOversizedCommand(t *testing.T) {
	eachBroker(t, func(t *testing.T, b testBroker) {
		o := observe(t, b.Addr(), "cam1")
		var sink *logSink
		a, d := startFakeAgent(t, control.Options{URL: "tcp://" + b.Addr(), ID: "cam1", Logger: testLogger(t, &sink)})
		tp := d.Topics()
		o.send(t, tp, `{"id":"j1","action":"join","channel":"lobby","uid":42}`)
		if r := o.reply(t, tp, "j1"); !r.OK || r.State.State != "joined" {
			t.Fatalf("join reply %+v", r)
		}
		sizes := []int{control.MaxCommandSize + 1, 60 << 10} // within any broker's packet limit
		if _, ok := b.(*mosquitto); ok {
			sizes = append(sizes, 4<<20) // mosquitto's default limit is 256 MB
		}
		for _, size := range sizes {
			a.mu.Lock()
			calls := len(a.calls)
			a.mu.Unlock()
			states := len(o.all(tp.State()))
			head := `{"id":"big","action":"join","channel":"elsewhere","pad":"`
			payload := head + strings.Repeat("x", size-len(head)-2) + `"}`
			m := o.mark()
			o.send(t, tp, payload)
			_, msg := o.waitFor(t, m, 10*time.Second, "reply to the oversized command", func(m message) bool { return m.topic == tp.Reply() })
			var r control.Reply
			if err := json.Unmarshal([]byte(msg.payload), &r); err != nil {
				t.Fatalf("reply %s: %v", msg.payload, err)
			}
			want := fmt.Sprintf("command is %d bytes, more than the %d allowed", size, control.MaxCommandSize)
			if r.OK || r.ID != "" || r.Error != want || r.State == nil || r.State.State != "joined" || r.State.Channel != "lobby" {
				t.Fatalf("reply to %d bytes: %s; want ok:false, id \"\", %q, state joined lobby", size, msg.payload, want)
			}
			// The next command is served; nothing ran for the oversized one.
			id := fmt.Sprintf("s%d", size)
			o.send(t, tp, `{"id":"`+id+`","action":"status"}`)
			if r := o.reply(t, tp, id); !r.OK || r.State.Channel != "lobby" {
				t.Fatalf("status after %d bytes: %+v", size, r)
			}
			a.mu.Lock()
			ran := a.calls[calls:]
			a.mu.Unlock()
			if len(ran) != 1 || ran[0].ID != id {
				t.Fatalf("handler ran %+v for the oversized command and a status", ran)
			}
			if n := len(o.all(tp.State())); n != states {
				t.Fatalf("%d state messages after the oversized command, want none", n-states)
			}
		}
		if got := strings.Count(sink.String(), "oversized command refused"); got != len(sizes) {
			t.Errorf("%d log lines about %d oversized commands", got, len(sizes))
		}
	})
}

// TestRefusalFloodLogging: a flood of garbage commands is answered in full, but writes a few
// log lines a second, the next one carrying the count held back; a valid command is served
// after it.
func TestRefusalFloodLogging(t *testing.T) {
	e := startEmbedded(t)
	o := observe(t, e.Addr(), "cam1")
	var sink *logSink
	_, d := startFakeAgent(t, control.Options{URL: "tcp://" + e.Addr(), ID: "cam1", Logger: testLogger(t, &sink)})
	tp := d.Topics()

	const n = 500
	replies := func() int {
		k := 0
		for _, m := range o.all(tp.Reply()) {
			if strings.Contains(m.payload, `"error":"invalid JSON`) || strings.Contains(m.payload, `"error":"busy"`) {
				k++
			}
		}
		return k
	}
	start := time.Now()
	for i := range n {
		o.c.Publish(tp.Cmd(), 0, false, fmt.Sprintf("garbage %d {", i)) // QoS 0: as fast as it goes
	}
	deadline := time.Now().Add(20 * time.Second)
	for replies() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if got := replies(); got < n {
		t.Fatalf("%d replies to %d garbage commands", got, n)
	}
	lines := strings.Count(sink.String(), `msg="malformed command"`) + strings.Count(sink.String(), `msg="command queue full`)
	// 5 at once, then one per 250 ms: a bound of what the limit allows, not a speed.
	limit := 5 + int(elapsed/(250*time.Millisecond)) + 1
	if lines > limit || lines == 0 {
		t.Fatalf("%d log lines for %d garbage commands in %s (limit allows %d)", lines, n, elapsed.Round(time.Millisecond), limit)
	}
	t.Logf("%d garbage commands in %s: %d log lines", n, elapsed.Round(time.Millisecond), lines)

	// After a pause, the next refusal's line says how many were held back.
	time.Sleep(300 * time.Millisecond)
	m := o.mark()
	o.send(t, tp, `{"id":"last",`)
	o.waitFor(t, m, 5*time.Second, "reply to the last garbage", func(m message) bool { return m.topic == tp.Reply() })
	o.send(t, tp, `{"id":"ok","action":"status"}`)
	if r := o.reply(t, tp, "ok"); !r.OK {
		t.Fatalf("status after the flood: %+v", r)
	}
	if !strings.Contains(sink.String(), fmt.Sprintf("suppressed=%d", n-lines)) {
		t.Errorf("no line reports the %d suppressed ones:\n%s", n-lines, sink.String())
	}
}
