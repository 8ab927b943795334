// Command probe is the VM test's other user of the channel. Inside the VM it waits for
// the hub and the device, joins a channel and publishes a tone, sends the device an MQTT
// join, subscribes to the device's video and audio, and prints one line
// "VMTEST RESULT {json}" on stdout with what it received. `probe devices` prints
// spec.List (what `camagent devices` prints).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/opus"
	"github.com/camagent/camagent/device/spec"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
)

// Result is what the probe prints.
type Result struct {
	OK            bool    `json:"ok"`
	Error         string  `json:"error,omitempty"`
	JoinMillis    int64   `json:"joinMillis"`
	FirstFrameMs  int64   `json:"firstFrameMillis"`
	Frames        int     `json:"frames"`
	Keyframes     int     `json:"keyframes"`
	Bytes         int     `json:"bytes"`
	Seconds       float64 `json:"seconds"`
	FPS           float64 `json:"fps"`
	Gaps          int     `json:"gaps"`
	SentToneHz    float64 `json:"sentToneHz"`
	HeardHz       float64 `json:"heardHz"`
	HeardDBFS     float64 `json:"heardDBFS"`
	HeardSamples  int     `json:"heardSamples"`
	AudioPackets  int     `json:"audioPackets"`
	DeviceStateOK bool    `json:"deviceStateOK"`
	Attempts      int     `json:"attempts"`
	// The camera unplugged mid-call (vivid's Disconnect control): the longest gap in the
	// video, and the frames and keyframes after it.
	UnplugGapMs          int64 `json:"unplugGapMs"`
	FramesAfterUnplug    int   `json:"framesAfterUnplug"`
	KeyframesAfterUnplug int   `json:"keyframesAfterUnplug"`
	// Snapshots and privacy mode (privacy.go), with --privacy.
	Privacy *PrivacyResult `json:"privacy,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "devices" {
		if err := spec.List(os.Stdout); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		return
	}
	hub := flag.String("hub", "http://127.0.0.1:8080", "hub base URL")
	broker := flag.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker")
	id := flag.String("id", "vm", "device id")
	tone := flag.Float64("tone", 1000, "tone to publish (Hz)")
	watch := flag.Duration("watch", 8*time.Second, "how long to receive")
	timeout := flag.Duration("timeout", 120*time.Second, "overall limit")
	unplug := flag.Bool("unplug", false, "after the call works, unplug vivid's camera and wait for the picture to return")
	privacy := flag.Bool("privacy", false, "then take snapshots and turn privacy mode on and off (privacy.go)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r := Result{SentToneHz: *tone}
	if err := run(ctx, *hub, *broker, *id, *watch, *unplug, *privacy, &r); err != nil {
		r.Error = err.Error()
	} else {
		r.OK = true
	}
	b, _ := json.Marshal(r)
	fmt.Printf("VMTEST RESULT %s\n", b)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", args...)
}

// waitDevice polls the hub's directory until the device is online.
func waitDevice(ctx context.Context, hub, id string) error {
	for {
		resp, err := http.Get(hub + "/api/devices")
		if err == nil {
			var devs []struct{ ID, Status string }
			json.NewDecoder(resp.Body).Decode(&devs)
			resp.Body.Close()
			for _, d := range devs {
				if d.ID == id && d.Status == "online" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("device %s never came online at %s: %w", id, hub, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func fetchToken(hub, channel string, uid uint32) (string, error) {
	body, _ := json.Marshal(map[string]any{"appId": "demo", "channel": channel, "uid": uid, "role": "publisher", "expireSeconds": 3600})
	resp, err := http.Post(hub+"/api/token", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var t struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.Token == "" {
		return "", fmt.Errorf("token: %s %v", resp.Status, err)
	}
	return t.Token, nil
}

// mqttCommand sends a command ("join" with a channel, or "leave") over MQTT and waits
// for the device's reply; it returns the device's uid from the reply's state.
func mqttCommand(ctx context.Context, broker, id, cmdID, action, channel string) (uint32, error) {
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("vmtest-probe").SetConnectTimeout(10 * time.Second)
	cl := mqtt.NewClient(opts)
	if t := cl.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return 0, fmt.Errorf("mqtt connect %s: %v", broker, t.Error())
	}
	defer cl.Disconnect(100)
	replies := make(chan []byte, 4)
	if t := cl.Subscribe("camagent/"+id+"/reply", 1, func(_ mqtt.Client, m mqtt.Message) { replies <- m.Payload() }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return 0, fmt.Errorf("mqtt subscribe: %v", t.Error())
	}
	m := map[string]any{"id": cmdID, "action": action}
	if channel != "" {
		m["channel"] = channel
	}
	cmd, _ := json.Marshal(m)
	if t := cl.Publish("camagent/"+id+"/cmd", 1, false, cmd); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return 0, fmt.Errorf("mqtt publish: %v", t.Error())
	}
	for {
		select {
		case b := <-replies:
			var r struct {
				ID    string
				OK    bool
				Error string
				State struct {
					State string
					UID   uint32
				}
			}
			if json.Unmarshal(b, &r) != nil || r.ID != cmdID {
				continue
			}
			if !r.OK {
				return 0, fmt.Errorf("device refused the %s: %s", action, r.Error)
			}
			return r.State.UID, nil
		case <-ctx.Done():
			return 0, fmt.Errorf("no MQTT reply to the %s", action)
		}
	}
}

func run(ctx context.Context, hub, broker, id string, watch time.Duration, unplug, privacy bool, r *Result) error {
	const channel, me = "vmtest", uint32(777)
	if err := waitDevice(ctx, hub, id); err != nil {
		return err
	}
	logf("device online")
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		return err
	}
	tok, err := fetchToken(hub, channel, me)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: hub, API: api, Logger: log})
	if err != nil {
		return fmt.Errorf("dial hub: %w", err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, "demo", channel, me, tok); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if _, err := rtctest.PublishTone(ctx, c, r.SentToneHz); err != nil {
		return err
	}
	// On a busy host the emulated CPU can stall for a second: the loopback card then
	// over- and underruns, and the agent gives up its microphone for the rest of that
	// call. A stall is not what the test is about, so the call is tried up to three times.
	var err2 error
	for r.Attempts = 1; r.Attempts <= 3; r.Attempts++ {
		var video *webrtc.TrackRemote
		if video, err2 = call(ctx, c, broker, id, channel, watch, r); err2 == nil {
			if unplug {
				if err := hotUnplug(ctx, video, r); err != nil {
					return err
				}
			}
			if privacy {
				return privacyCheck(ctx, hub, broker, id, channel, r)
			}
			return nil
		}
		logf("attempt %d: %v", r.Attempts, err2)
		if _, err := mqttCommand(ctx, broker, id, fmt.Sprintf("vmtest-leave-%d", r.Attempts), "leave", ""); err != nil {
			return err
		}
	}
	r.Attempts--
	return err2
}

// call has the device join, receives its video for watch and waits for the tone. It returns
// the device's video track.
func call(ctx context.Context, c *rtc.Client, broker, id, channel string, watch time.Duration, r *Result) (*webrtc.TrackRemote, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel() // the audio reader
	start := time.Now()
	dev, err := mqttCommand(ctx, broker, id, fmt.Sprintf("vmtest-join-%d", r.Attempts), "join", channel)
	if err != nil {
		return nil, err
	}
	r.JoinMillis = time.Since(start).Milliseconds()
	r.DeviceStateOK = true
	logf("device joined as %d in %d ms", dev, r.JoinMillis)
	if err := waitPublished(ctx, c, dev); err != nil {
		return nil, err
	}
	vt, err := c.Subscribe(ctx, dev, rtc.KindVideo)
	if err != nil {
		return nil, fmt.Errorf("subscribe video: %w", err)
	}
	at, err := c.Subscribe(ctx, dev, rtc.KindAudio)
	if err != nil {
		return nil, fmt.Errorf("subscribe audio: %w", err)
	}
	r.AudioPackets, r.Frames, r.Keyframes, r.Bytes, r.Gaps = 0, 0, 0, 0, 0
	heard := collectAudio(actx, at, &r.AudioPackets)
	if err := countVideo(ctx, vt, start, watch, r); err != nil {
		return nil, err
	}
	// The tone goes probe → hub → device speaker → snd-aloop → device microphone → hub →
	// probe; on an emulated CPU the first second of it may be late, so wait for it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		pcm := heard()
		r.HeardSamples = len(pcm)
		if len(pcm) >= device.SampleRate {
			tail := pcm[len(pcm)-device.SampleRate:]
			r.HeardHz = audio.DominantFrequency(tail, device.SampleRate)
			r.HeardDBFS = audio.DBFS(tail)
			if math.Abs(r.HeardHz-r.SentToneHz) < 10 && r.HeardDBFS > -30 {
				return vt, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("did not hear the tone back: %d samples, last second at %.1f Hz, %.1f dBFS", len(pcm), r.HeardHz, r.HeardDBFS)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func waitPublished(ctx context.Context, c *rtc.Client, uid uint32) error {
	want := map[string]bool{rtc.KindVideo: true, rtc.KindAudio: true}
	for len(want) > 0 {
		select {
		case m, ok := <-c.Events():
			if !ok {
				return fmt.Errorf("client ended: %v", c.Err())
			}
			if m.Event == rtc.EventUserPublished && m.UID != nil && *m.UID == uid {
				delete(want, m.Kind)
			}
		case <-ctx.Done():
			return fmt.Errorf("device did not publish %v", want)
		}
	}
	return nil
}

// assembler joins H.264 RTP packets (RFC 6184) into access units.
type assembler struct {
	depack codecs.H264Packet
	cur    []byte
}

// push adds a packet and, with the marker bit, returns the access unit it completes. A
// packet that does not depacketize is skipped, marker and all.
func (a *assembler) push(pkt *rtp.Packet) (au []byte, done bool) {
	payload, err := a.depack.Unmarshal(pkt.Payload)
	if err != nil {
		return nil, false
	}
	a.cur = append(a.cur, payload...)
	if !pkt.Marker {
		return nil, false
	}
	au, a.cur = a.cur, nil
	return au, true
}

// countVideo reassembles access units for watch and counts them.
func countVideo(ctx context.Context, track *webrtc.TrackRemote, start time.Time, watch time.Duration, r *Result) error {
	var (
		frames assembler
		last   uint16
		first  = true
		t0     time.Time
	)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !t0.IsZero() && time.Since(t0) >= watch {
			r.Seconds = time.Since(t0).Seconds()
			r.FPS = float64(r.Frames) / r.Seconds
			return nil
		}
		track.SetReadDeadline(time.Now().Add(10 * time.Second))
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return fmt.Errorf("video: %w (after %d frames)", err, r.Frames)
		}
		if !first && pkt.SequenceNumber != last+1 {
			r.Gaps++
		}
		first, last = false, pkt.SequenceNumber
		if au, done := frames.push(pkt); done {
			if t0.IsZero() {
				t0 = time.Now()
				r.FirstFrameMs = time.Since(start).Milliseconds()
			}
			r.Frames++
			r.Bytes += len(au)
			if h264.IsKeyframe(au) {
				r.Keyframes++
			}
		}
	}
}

func collectAudio(ctx context.Context, track *webrtc.TrackRemote, packets *int) func() []int16 {
	var (
		mu  sync.Mutex
		out []int16
	)
	dec, _ := opus.NewDecoder()
	go func() {
		pcm := make([]int16, 5760)
		b := make([]byte, 1500)
		for ctx.Err() == nil {
			track.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := track.Read(b)
			if err != nil {
				continue
			}
			pkt := &rtp.Packet{}
			if pkt.Unmarshal(b[:n]) != nil {
				continue
			}
			mu.Lock()
			*packets++
			mu.Unlock()
			if k, err := dec.Decode(pkt.Payload, pcm); err == nil {
				mu.Lock()
				out = append(out, pcm[:k]...)
				mu.Unlock()
			}
		}
	}()
	return func() []int16 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int16(nil), out...)
	}
}
