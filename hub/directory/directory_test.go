package directory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/hub/directory"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestDirectory: the hub's directory is an ordinary client of the MQTT
// API — it lists a device from its retained status and state, sends it
// commands and gets their replies, and sees it go offline.
func TestDirectory(t *testing.T) {
	b, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0", AllowAnonymous: true})
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

// TestDirectoryLimits: the directory takes a reply only from the commanded device's own
// topic, ignores oversized states and garbage statuses, and stops growing at MaxDevices.
func TestDirectoryLimits(t *testing.T) {
	b, err := broker.New(broker.Options{TCPAddr: "127.0.0.1:0", AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(ctx) }()
	defer func() { cancel(); <-bdone }()
	<-b.Ready()
	url := "tcp://" + b.Addr()

	d := directory.New(directory.Options{Broker: url, MaxDevices: 5, MaxState: 1024})
	ddone := make(chan error, 1)
	go func() { ddone <- d.Run(ctx) }()
	defer func() { cancel(); <-ddone }()

	co := mqtt.NewClientOptions().AddBroker(url).SetClientID("attacker")
	var cmds = make(chan mqtt.Message, 4)
	attacker := mqtt.NewClient(co)
	if tok := attacker.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer attacker.Disconnect(0)
	pub := func(topic string, payload any, retained bool) {
		t.Helper()
		if tok := attacker.Publish(topic, 1, retained, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// The "victim" device never answers; the attacker reads its commands and answers them on
	// its own topic.
	if tok := attacker.Subscribe("camagent/victim/cmd", 1, func(_ mqtt.Client, m mqtt.Message) { cmds <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	go func() {
		for m := range cmds {
			var c struct {
				ID string `json:"id"`
			}
			json.Unmarshal(m.Payload(), &c)
			pub("camagent/mallory/reply", `{"id":"`+c.ID+`","ok":true,"state":{"state":"joined"}}`, false)
		}
	}()
	time.Sleep(200 * time.Millisecond) // the directory's subscriptions
	if raw, err := d.Command(ctx, "victim", map[string]any{"action": "status"}, 700*time.Millisecond); err != directory.ErrNoReply {
		t.Fatalf("a reply on another device's topic answered the command: %s %v", raw, err)
	}
	close(cmds)

	pub("camagent/big/status", "online", true)
	pub("camagent/big/state", `{"state":"idle","pad":"`+strings.Repeat("x", 2000)+`"}`, true)
	pub("camagent/odd/status", "pwned<script>", true)
	for i := 0; i < 20; i++ {
		pub(fmt.Sprintf("camagent/fake%02d/status", i), "online", true)
	}
	time.Sleep(300 * time.Millisecond)
	devs := d.Devices()
	if len(devs) > 5 {
		t.Fatalf("directory grew to %d devices, limit 5", len(devs))
	}
	for _, x := range devs {
		if x.ID == "big" && len(x.State) > 0 {
			t.Fatalf("an oversized state was kept: %d bytes", len(x.State))
		}
		if x.Status != "online" && x.Status != "offline" && x.Status != "unknown" {
			t.Fatalf("a garbage status was kept: %q", x.Status)
		}
	}
	if d.Refused() == 0 {
		t.Fatal("no refusal counted")
	}
}
