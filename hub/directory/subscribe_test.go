package directory_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/camagent/camagent/hub/directory"
)

// refuser is a broker hook that lets everyone in and refuses the first n subscriptions to
// filter (SUBACK 0x80), as a NATS node does while JetStream elects leaders.
type refuser struct {
	mochi.HookBase
	filter  string
	n       int32
	refused atomic.Int32
}

func (h *refuser) ID() string { return "refuser" }
func (h *refuser) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}
func (h *refuser) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *refuser) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	if !write && topic == h.filter && h.refused.Load() < h.n {
		h.refused.Add(1)
		return false
	}
	return true
}

// TestSubscribeRetriesRefusal: a subscription the broker refuses is tried again until it is
// granted, and then delivers.
func TestSubscribeRetriesRefusal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hook := &refuser{filter: "camagent/+/reply", n: 2}
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	got := make(chan string, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("sub-test"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	directory.Subscribe(ctx, c, map[string]byte{"camagent/+/reply": 1}, func(_ paho.Client, m paho.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if n := hook.refused.Load(); n != 2 {
		t.Fatalf("the broker refused %d subscriptions, want 2 before Subscribe returned", n)
	}
	if tok := c.Publish("camagent/porch/reply", 1, false, "hello"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscribed after two refusals, but nothing was delivered")
	}
}
