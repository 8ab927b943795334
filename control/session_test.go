package control_test

import (
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// TestPersistentSession: with a persistent session, a command sent while the device is
// offline runs when it comes back; with the default clean session it does not.
func TestPersistentSession(t *testing.T) {
	eachBroker(t, func(t *testing.T, b testBroker) {
		for _, persistent := range []bool{true, false} {
			id := "sess-clean"
			if persistent {
				id = "sess-kept"
			}
			o := observe(t, b.Addr(), id)
			a := &fakeAgent{state: control.State{State: control.StateIdle}}
			opts := control.Options{URL: "tcp://" + b.Addr(), ID: id, Handler: a.handle, PersistentSession: persistent}
			first := startDevice(t, opts)
			tp := first.Topics()
			first.stop(t) // offline (its will says so)
			o.waitFor(t, 0, 5*time.Second, "offline", func(m message) bool {
				return m.topic == tp.Status() && m.payload == "offline"
			})

			o.send(t, tp, `{"id":"while-away","action":"join","channel":"porch"}`)
			time.Sleep(200 * time.Millisecond)
			second := startDevice(t, opts)
			defer second.stop(t)
			if persistent {
				if r := o.reply(t, tp, "while-away"); !r.OK {
					t.Fatalf("queued command's reply %+v", r)
				}
				if a.count("while-away") != 1 {
					t.Fatalf("queued command ran %d times", a.count("while-away"))
				}
			} else {
				// A later command is answered; the one sent while offline never ran.
				o.send(t, tp, `{"id":"after","action":"status"}`)
				o.reply(t, tp, "after")
				if n := a.count("while-away"); n != 0 {
					t.Fatalf("a command sent to a clean-session device while offline ran %d times", n)
				}
			}
		}
	})
}
