package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/rtc"
)

// PrivacyResult is what the snapshot and privacy part saw (issue 14's done-when 2 and 3 on
// vivid and snd-aloop).
type PrivacyResult struct {
	// Which processes hold the camera (/dev/video*) and the sound card's PCMs
	// (/dev/snd/pcm*), as "comm:/dev/…": in the call, while privacy mode is on, after it is
	// off and the device joined again.
	OpenInCall    []string `json:"openInCall"`
	OpenInPrivacy []string `json:"openInPrivacy"`
	OpenAfterOff  []string `json:"openAfterOff"`
	// The snapshot taken in the call: the reply's figures and the JPEG the hub serves.
	SnapshotBytes  int     `json:"snapshotBytes"`
	SnapshotWidth  int     `json:"snapshotWidth"`
	SnapshotHeight int     `json:"snapshotHeight"`
	HubBytes       int     `json:"hubBytes"`
	HubLumaSD      float64 `json:"hubLumaSD"` // a picture, not a flat frame
	// Privacy on: the join's refusal and what the hub's snapshot route answers.
	JoinRefused       string `json:"joinRefused"`
	SnapshotStatus    int    `json:"snapshotStatus"`
	FreshStatus       int    `json:"freshStatus"`
	StatePrivacy      bool   `json:"statePrivacy"`
	FramesAfterOff    int    `json:"framesAfterOff"`
	KeyframesAfterOff int    `json:"keyframesAfterOff"`
	// Idle after the call: a fresh snapshot through the hub opens the camera and closes it.
	IdleWidth        int      `json:"idleWidth"`
	IdleHeight       int      `json:"idleHeight"`
	OpenAfterIdleJPG []string `json:"openAfterIdleSnapshot"`
}

// devicesHeld lists the processes holding a camera or a PCM device node.
func devicesHeld() []string {
	var out []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		for _, fd := range fds {
			target, err := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name())
			if err != nil || !(strings.HasPrefix(target, "/dev/video") || strings.HasPrefix(target, "/dev/snd/pcm")) {
				continue
			}
			comm, _ := os.ReadFile("/proc/" + p.Name() + "/comm")
			if h := strings.TrimSpace(string(comm)) + ":" + target; !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	slices.Sort(out)
	return out
}

// waitHeld polls devicesHeld until ok or 10 s have passed, and returns the last list.
func waitHeld(ok func([]string) bool) []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := devicesHeld()
		if ok(h) || time.Now().After(deadline) {
			return h
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func holds(list []string, prefix string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, ":"+prefix) })
}

// reply is a device's answer to a command.
type reply struct {
	ID    string
	OK    bool
	Error string
	State struct {
		State   string
		Privacy bool
		UID     uint32
	}
	Snapshot *struct{ Bytes, Width, Height int }
}

// send publishes cmd (its "id" set here) on the device's cmd topic and waits for its reply.
func send(ctx context.Context, broker, id string, cmd map[string]any) (reply, error) {
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("vmtest-privacy").SetConnectTimeout(10 * time.Second))
	if t := cl.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return reply{}, fmt.Errorf("mqtt connect: %v", t.Error())
	}
	defer cl.Disconnect(100)
	replies := make(chan []byte, 4)
	if t := cl.Subscribe("camagent/"+id+"/reply", 1, func(_ mqtt.Client, m mqtt.Message) { replies <- m.Payload() }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return reply{}, fmt.Errorf("mqtt subscribe: %v", t.Error())
	}
	cmd["id"] = fmt.Sprintf("vmtest-%s-%d", cmd["action"], time.Now().UnixNano())
	b, _ := json.Marshal(cmd)
	if t := cl.Publish("camagent/"+id+"/cmd", 1, false, b); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return reply{}, fmt.Errorf("mqtt publish: %v", t.Error())
	}
	for {
		select {
		case p := <-replies:
			var r reply
			if json.Unmarshal(p, &r) == nil && r.ID == cmd["id"] {
				return r, nil
			}
		case <-time.After(100 * time.Second):
			return reply{}, fmt.Errorf("no reply to %s", b)
		case <-ctx.Done():
			return reply{}, ctx.Err()
		}
	}
}

// getSnapshot GETs the hub's snapshot route; it returns the status and the decoded picture.
func getSnapshot(hub, id, query string) (int, []byte, *image.YCbCr, error) {
	resp, err := http.Get(hub + "/api/devices/" + id + "/snapshot.jpg" + query)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, b, nil, nil
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return resp.StatusCode, b, nil, fmt.Errorf("snapshot.jpg does not decode: %w", err)
	}
	y, ok := img.(*image.YCbCr)
	if !ok {
		return resp.StatusCode, b, nil, fmt.Errorf("snapshot.jpg is a %T", img)
	}
	return resp.StatusCode, b, y, nil
}

// lumaSD is the standard deviation of a picture's luma.
func lumaSD(y *image.YCbCr) float64 {
	b := y.Bounds()
	var sum, sq float64
	for row := 0; row < b.Dy(); row++ {
		for _, v := range y.Y[row*y.YStride : row*y.YStride+b.Dx()] {
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
	}
	n := float64(b.Dx() * b.Dy())
	return math.Sqrt(sq/n - (sum/n)*(sum/n))
}

// privacyCheck runs in the call the first part left running: a snapshot of the vivid picture
// through MQTT and the hub; privacy on closes the camera and the microphone and refuses a
// join and snapshots; privacy off lets the device join and send its picture again; idle, a
// fresh snapshot through the hub opens the camera and closes it again.
func privacyCheck(ctx context.Context, hub, broker, id, channel string, r *Result) error {
	p := &PrivacyResult{}
	r.Privacy = p
	// aplay and arecord restart now and then on an emulated CPU: wait to see both held.
	p.OpenInCall = waitHeld(func(h []string) bool { return holds(h, "/dev/video") && holds(h, "/dev/snd/pcm") })
	rep, err := send(ctx, broker, id, map[string]any{"action": "snapshot"})
	if err != nil || !rep.OK || rep.Snapshot == nil {
		return fmt.Errorf("snapshot in the call: %+v %v", rep, err)
	}
	p.SnapshotBytes, p.SnapshotWidth, p.SnapshotHeight = rep.Snapshot.Bytes, rep.Snapshot.Width, rep.Snapshot.Height
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, b, y, err := getSnapshot(hub, id, "")
		if err != nil {
			return err
		}
		if code == http.StatusOK && len(b) == p.SnapshotBytes {
			p.HubBytes, p.HubLumaSD = len(b), lumaSD(y)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the hub serves HTTP %d, %d bytes, not the %d-byte snapshot", code, len(b), p.SnapshotBytes)
		}
	}
	logf("snapshot in the call: %d bytes %dx%d", p.SnapshotBytes, p.SnapshotWidth, p.SnapshotHeight)

	rep, err = send(ctx, broker, id, map[string]any{"action": "privacy", "on": true})
	if err != nil || !rep.OK {
		return fmt.Errorf("privacy on: %+v %v", rep, err)
	}
	p.StatePrivacy = rep.State.Privacy
	p.OpenInPrivacy = waitHeld(func(h []string) bool { return len(h) == 0 })
	rep, err = send(ctx, broker, id, map[string]any{"action": "join", "channel": channel})
	if err != nil {
		return err
	}
	if rep.OK {
		return errors.New("the device joined in privacy mode")
	}
	p.JoinRefused = rep.Error
	if h := devicesHeld(); len(h) > 0 {
		p.OpenInPrivacy = h // the refused join opened something
	}
	p.SnapshotStatus, _, _, _ = getSnapshot(hub, id, "")
	p.FreshStatus, _, _, _ = getSnapshot(hub, id, "?fresh=1")
	logf("privacy on: devices held %v, join refused: %s, snapshot.jpg %d, fresh %d", p.OpenInPrivacy, p.JoinRefused, p.SnapshotStatus, p.FreshStatus)

	rep, err = send(ctx, broker, id, map[string]any{"action": "privacy", "on": false})
	if err != nil || !rep.OK || rep.State.Privacy {
		return fmt.Errorf("privacy off: %+v %v", rep, err)
	}
	// A new user for the new call: the first one's signalling may not have survived the
	// emulated CPU's stalls around the unplug.
	c2, err := joinAs(ctx, hub, channel, 778)
	if err != nil {
		return err
	}
	defer c2.Close()
	rep, err = send(ctx, broker, id, map[string]any{"action": "join", "channel": channel})
	if err != nil || !rep.OK {
		return fmt.Errorf("join after privacy off: %+v %v", rep, err)
	}
	if err := waitPublished(ctx, c2, rep.State.UID); err != nil {
		return err
	}
	vt, err := c2.Subscribe(ctx, rep.State.UID, rtc.KindVideo)
	if err != nil {
		return fmt.Errorf("subscribe video after privacy off: %w", err)
	}
	var aus assembler
	for p.FramesAfterOff < 10 {
		vt.SetReadDeadline(time.Now().Add(10 * time.Second))
		pkt, _, err := vt.ReadRTP()
		if err != nil {
			return fmt.Errorf("video after privacy off: %w (%d frames)", err, p.FramesAfterOff)
		}
		if au, done := aus.push(pkt); done {
			p.FramesAfterOff++
			if h264.IsKeyframe(au) {
				p.KeyframesAfterOff++
			}
		}
	}
	p.OpenAfterOff = waitHeld(func(h []string) bool { return holds(h, "/dev/video") && holds(h, "/dev/snd/pcm") })

	// Idle: the camera is opened for a fresh snapshot and closed again.
	if rep, err = send(ctx, broker, id, map[string]any{"action": "leave"}); err != nil || !rep.OK {
		return fmt.Errorf("leave: %+v %v", rep, err)
	}
	waitHeld(func(h []string) bool { return len(h) == 0 })
	code, _, y, err := getSnapshot(hub, id, "?fresh=1")
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("idle fresh snapshot: HTTP %d %v", code, err)
	}
	p.IdleWidth, p.IdleHeight = y.Bounds().Dx(), y.Bounds().Dy()
	p.OpenAfterIdleJPG = waitHeld(func(h []string) bool { return len(h) == 0 })
	return nil
}

// joinAs joins channel as uid with a token from the hub (demo mode on loopback).
func joinAs(ctx context.Context, hub, channel string, uid uint32) (*rtc.Client, error) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		return nil, err
	}
	tok, err := fetchToken(hub, channel, uid)
	if err != nil {
		return nil, err
	}
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: hub, API: api, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, fmt.Errorf("dial hub: %w", err)
	}
	if _, err := c.Join(ctx, "demo", channel, uid, tok); err != nil {
		c.Close()
		return nil, fmt.Errorf("join as %d: %w", uid, err)
	}
	return c, nil
}
