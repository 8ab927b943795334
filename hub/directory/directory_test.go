package directory_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/hub/directory"
)

// TestDirectory: the hub's directory is an ordinary client of the MQTT
// API — it lists a device from its retained status and state, sends it
// commands and gets their replies, and sees it go offline.
func TestDirectory(t *testing.T) {
	b, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(ctx) }()
	defer func() { cancel(); <-bdone }()
	<-b.Ready()
	url := "tcp://" + b.Addr()

	var dev *control.Client
	dev, err = control.New(control.Options{URL: url, ID: "porch", Handler: func(_ context.Context, cmd control.Command) (control.State, error) {
		st := control.State{State: control.StateIdle}
		if cmd.Action == control.ActionJoin {
			st = control.State{State: control.StateJoined, Channel: cmd.Channel, UID: 9}
			dev.PublishState(st)
		}
		return st, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	dev.PublishState(control.State{State: control.StateIdle})
	devCtx, stopDev := context.WithCancel(ctx)
	devDone := make(chan error, 1)
	go func() { devDone <- dev.Run(devCtx) }()
	<-dev.Ready()

	d := directory.New(directory.Options{Broker: url})
	ddone := make(chan error, 1)
	dctx, stopDir := context.WithCancel(ctx)
	go func() { ddone <- d.Run(dctx) }()
	defer func() { stopDir(); <-ddone }()

	waitDevice := func(what string, ok func(directory.Device) bool) directory.Device {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			for _, x := range d.Devices() {
				if x.ID == "porch" && ok(x) {
					return x
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("directory: no %s; has %+v", what, d.Devices())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitDevice("online idle device", func(x directory.Device) bool {
		return x.Status == "online" && json.Valid(x.State)
	})

	var raw json.RawMessage
	deadline := time.Now().Add(10 * time.Second)
	for { // Run connects in the background
		raw, err = d.Command(ctx, "porch", map[string]any{"action": "join", "channel": "lobby"}, 5*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	var r control.Reply
	if err := json.Unmarshal(raw, &r); err != nil || !r.OK || r.State == nil || r.State.Channel != "lobby" {
		t.Fatalf("reply %s (%v)", raw, err)
	}
	waitDevice("joined state", func(x directory.Device) bool {
		var s control.State
		return json.Unmarshal(x.State, &s) == nil && s.State == control.StateJoined
	})
	// An unknown device does not answer.
	if _, err := d.Command(ctx, "nobody", map[string]any{"action": "status"}, 300*time.Millisecond); err != directory.ErrNoReply {
		t.Fatalf("command to a missing device: %v", err)
	}

	stopDev()
	<-devDone
	waitDevice("offline device", func(x directory.Device) bool { return x.Status == "offline" })
}
