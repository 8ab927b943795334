package control_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// TestFailover: a device given two brokers connects to the first; when that one dies it
// connects to the second by itself, announces itself there and answers a command through it.
func TestFailover(t *testing.T) {
	pairs := map[string]func(t *testing.T) testBroker{
		"embedded":  func(t *testing.T) testBroker { return startEmbedded(t) },
		"mosquitto": func(t *testing.T) testBroker { return startMosquitto(t) },
	}
	for name, start := range pairs {
		t.Run(name, func(t *testing.T) {
			a, b := start(t), start(t)
			id := "failover"
			oa, ob := observe(t, a.Addr(), id), observe(t, b.Addr(), id)
			handler := func(context.Context, control.Command) (control.State, error) {
				return control.State{State: control.StateIdle}, nil
			}
			d := startDevice(t, control.Options{URL: "tcp://" + a.Addr() + ", tcp://" + b.Addr(), ID: id, Handler: handler})
			tp := d.Topics()
			if got := d.Broker(); got != "tcp://"+a.Addr() {
				t.Fatalf("first connection to %s, want the first broker tcp://%s", got, a.Addr())
			}
			oa.send(t, tp, `{"id":"on-a","action":"status"}`)
			if r := oa.reply(t, tp, "on-a"); !r.OK {
				t.Fatalf("reply through the first broker: %+v", r)
			}

			from := ob.mark()
			killed := time.Now()
			a.Stop(t)
			ob.waitFor(t, from, 15*time.Second, "online on the second broker", is(tp.Status(), "online"))
			if got := d.Broker(); got != "tcp://"+b.Addr() {
				t.Errorf("after the first broker died: connected to %s, want tcp://%s", got, b.Addr())
			}
			ob.send(t, tp, `{"id":"on-b","action":"status"}`)
			if r := ob.reply(t, tp, "on-b"); !r.OK {
				t.Fatalf("reply through the second broker: %+v", r)
			}
			t.Logf("%s: first broker stopped, command answered through the second %v later", name, time.Since(killed).Round(time.Millisecond))
			if n := ob.repliesTo(tp, "on-b"); n != 1 {
				t.Errorf("%d replies to on-b, want 1", n)
			}
		})
	}
}

// TestBrokers: the broker setting's list form.
func TestBrokers(t *testing.T) {
	good := map[string][]string{
		"tcp://a:1883":                      {"tcp://a:1883"},
		"tcp://a:1883,ssl://b:8883":         {"tcp://a:1883", "ssl://b:8883"},
		" tcp://a:1 , wss://b/mqtt ,":       {"tcp://a:1", "wss://b/mqtt"},
		"tcp://u:p@a:1883,tcp://u:p@b:1883": {"tcp://u:p@a:1883", "tcp://u:p@b:1883"},
	}
	for in, want := range good {
		if got := control.BrokerURLs(in); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("BrokerURLs(%q) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"", " , ", "tcp://a:1,http://b:2", "tcp://a:1,b:2", "tcp://a:1,tcp://"} {
		if _, err := control.Brokers(in); err == nil {
			t.Errorf("Brokers(%q): no error", in)
		}
		if _, err := control.New(control.Options{URL: in, ID: "x", Handler: func(context.Context, control.Command) (control.State, error) {
			return control.State{}, nil
		}}); err == nil {
			t.Errorf("New with URL %q: no error", in)
		}
	}
}
