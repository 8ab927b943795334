package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/spec"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

type joinParams struct {
	appID, channel, token, hub string
	uid                        uint32
}

func (p joinParams) sameChannel(q joinParams) bool {
	return p.appID == q.appID && p.channel == q.channel && p.uid == q.uid && p.hub == q.hub
}

// call is one stay in a channel: the devices, the tracks, and the connection to the hub,
// which it re-establishes on its own after a failure.
type call struct {
	a      *Agent
	p      joinParams
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// leaving is set by stop before it says goodbye: the socket's normal close that follows is
	// not a lost connection (supervise would publish a "joining" state racing the "idle" one).
	leaving atomic.Bool

	cam   device.VideoSource
	mic   device.Microphone
	spk   device.Speaker
	mixer *audio.Mixer
	duck  *audio.Ducker // nil: full duplex (micDuckDB 0)
	video *webrtc.TrackLocalStaticSample
	audio *webrtc.TrackLocalStaticSample

	mu     sync.Mutex
	client *rtc.Client
	users  map[uint32]bool
	// remote audio subscriptions by uid, cancelled when the user unpublishes or leaves
	listening map[uint32]context.CancelFunc
}

// startCall opens the devices, joins and publishes; it returns once media flows (or fails).
func (a *Agent) startCall(ctx context.Context, p joinParams) (*call, error) {
	cctx, cancel := context.WithCancel(context.Background())
	c := &call{a: a, p: p, ctx: cctx, cancel: cancel, mixer: audio.NewMixer(audio.MixerLogger(a.log)),
		log: a.log.With("channel", p.channel, "uid", p.uid), users: map[uint32]bool{},
		listening: map[uint32]context.CancelFunc{}}
	if a.cfg.MicDuckDB > 0 {
		c.duck = audio.NewDucker(a.cfg.MicDuckDB, a.cfg.MicDuckHold)
	}
	if err := c.openDevices(); err != nil {
		c.stop()
		return nil, err
	}
	// Media flows into the tracks from now on (dropped until a connection is bound), so the
	// hub has packets to announce as soon as the publish connection is up.
	c.goRun(c.pumpVideo)
	c.goRun(c.pumpAudio)
	client, err := c.connect(ctx)
	if err != nil {
		c.stop()
		return nil, err
	}
	c.start(client)
	return c, nil
}

func (c *call) openDevices() error {
	cfg := c.a.cfg
	var err error
	vo := spec.VideoOptions{Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS, Encoder: cfg.Encoder,
		Format: cfg.PixelFormat, Bitrate: cfg.Bitrate, GOP: cfg.GOP,
		// A camera that fails (unplugged, stalled) is reopened with back-off; each failure is
		// reported, and the picture comes back by itself.
		OnError: func(err error) {
			c.log.Warn("camera failed; reopening", "err", err)
			c.a.event(control.Event{Event: "error", Channel: c.p.channel, Error: "camera: " + err.Error()})
		}}
	if c.cam, err = spec.OpenCamera(c.ctx, cfg.Camera, vo, c.log); err != nil {
		return fmt.Errorf("open camera %q: %w", cfg.Camera, err)
	}
	if c.mic, err = spec.OpenMicrophone(c.ctx, cfg.Microphone, cfg.ToneHz, c.log); err != nil {
		return fmt.Errorf("open microphone %q: %w", cfg.Microphone, err)
	}
	if c.spk, err = spec.OpenSpeaker(c.ctx, cfg.Speaker, cfg.StateDir, c.log); err != nil {
		return fmt.Errorf("open speaker %q: %w", cfg.Speaker, err)
	}
	if c.cam != nil {
		c.video, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: rtc.H264FmtpConstrainedBaseline,
		}, "video", "camagent-"+c.a.cfg.ID)
		if err != nil {
			return fmt.Errorf("video track: %w", err)
		}
	}
	if c.mic != nil {
		c.audio, err = webrtc.NewTrackLocalStaticSample(audioCapability(cfg.AudioCodec), "audio", "camagent-"+c.a.cfg.ID)
		if err != nil {
			return fmt.Errorf("audio track: %w", err)
		}
	}
	return nil
}

// fetchToken asks the hub's token service for a publisher token.
func (c *call) fetchToken(ctx context.Context) (string, error) {
	body, _ := json.Marshal(map[string]any{"appId": c.p.appID, "channel": c.p.channel, "uid": c.p.uid,
		"role": "publisher", "expireSeconds": 3600})
	url := strings.TrimRight(c.p.hub, "/") + "/api/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.a.cfg.HubKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.a.cfg.HubKey)
	}
	resp, err := c.a.hubHTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask hub for a token: %w", err)
	}
	defer resp.Body.Close()
	var r struct {
		Token string     `json:"token"`
		Error *rtc.Error `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", fmt.Errorf("ask hub for a token: %s: unreadable answer: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || r.Token == "" {
		if r.Error != nil {
			return "", fmt.Errorf("hub token service refused: %s (%s)", r.Error.Message, r.Error.Code)
		}
		return "", fmt.Errorf("hub token service answered %s", resp.Status)
	}
	return r.Token, nil
}

// connect dials the hub, joins and publishes the call's tracks.
func (c *call) connect(ctx context.Context) (*rtc.Client, error) {
	tok := c.p.token
	if tok == "" {
		var err error
		if tok, err = c.fetchToken(ctx); err != nil {
			return nil, err
		}
	}
	client, err := rtc.Dial(ctx, rtc.ClientOptions{URL: c.p.hub, API: c.a.api, Logger: c.log, TLS: c.a.hubTLS})
	if err != nil {
		return nil, err
	}
	res, err := client.Join(ctx, c.p.appID, c.p.channel, c.p.uid, tok)
	if err != nil {
		client.Close()
		return nil, errorf("join "+c.p.channel, err)
	}
	var tracks []webrtc.TrackLocal
	if c.video != nil {
		tracks = append(tracks, c.video)
	}
	if c.audio != nil {
		tracks = append(tracks, c.audio)
	}
	senders, err := client.Publish(ctx, tracks...)
	if err != nil {
		client.Close()
		return nil, errorf("publish", err)
	}
	for i, s := range senders {
		onKeyframeRequest := func() {}
		if tracks[i] == webrtc.TrackLocal(c.video) {
			onKeyframeRequest = c.cam.RequestKeyframe
		}
		go drainRTCP(s, onKeyframeRequest)
	}
	c.mu.Lock()
	c.users = map[uint32]bool{}
	for _, u := range res.Users {
		c.users[u.UID] = true
	}
	c.mu.Unlock()
	for _, u := range res.Users {
		if u.Audio {
			c.listen(client, u.UID)
		}
	}
	c.log.Info("joined channel", "users", len(res.Users), "hub", c.p.hub)
	return client, nil
}

// drainRTCP reads a sender's RTCP (pion's interceptors need it read) and answers keyframe requests.
func drainRTCP(s *webrtc.RTPSender, keyframe func()) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				keyframe()
			}
		}
	}
}

// start runs the speaker's mixer and the supervisor.
func (c *call) start(client *rtc.Client) {
	c.mu.Lock()
	c.client = client
	c.mu.Unlock()
	c.publishState()
	if c.spk != nil { // speaker "null": nobody is listened to
		spk := c.spk
		if c.duck != nil {
			spk = heardSpeaker{Speaker: spk, duck: c.duck}
		}
		c.goRun(func() { c.mixer.Run(c.ctx, spk) })
	}
	c.goRun(c.supervise)
	c.goRun(c.reportStats) // stats.go
}

func (c *call) goRun(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (c *call) pumpVideo() {
	if c.cam == nil {
		return
	}
	for {
		s, err := c.cam.ReadSample(c.ctx)
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Error("camera failed", "err", err)
				c.a.event(control.Event{Event: "error", Channel: c.p.channel, Error: "camera: " + err.Error()})
			}
			return
		}
		if err := c.video.WriteSample(media.Sample{Data: s.Data, Duration: s.Duration}); err != nil && c.ctx.Err() == nil {
			c.log.Debug("write video", "err", err)
		}
	}
}

func (c *call) pumpAudio() {
	if c.mic == nil {
		return
	}
	encode, err := audioEncoder(c.a.cfg.AudioCodec)
	if err != nil {
		c.log.Error("audio encoder", "err", err)
		return
	}
	pcm := make([]int16, device.FrameSamples)
	buf := make([]byte, 1500)
	backoff := 100 * time.Millisecond
	for {
		if err := c.mic.ReadFrame(c.ctx, pcm); err != nil {
			if c.ctx.Err() != nil {
				return
			}
			// ALSA microphones restart themselves and report each failure once: report it,
			// wait a little, and read on.
			c.log.Error("microphone failed", "err", err, "retry in", backoff)
			c.a.event(control.Event{Event: "error", Channel: c.p.channel, Error: "microphone: " + err.Error()})
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if c.duck != nil {
			c.duck.Apply(pcm)
		}
		payload, err := encode(pcm, buf[:0])
		if err != nil {
			c.log.Debug("audio encode", "err", err)
			continue
		}
		if err := c.audio.WriteSample(media.Sample{Data: payload, Duration: device.FrameDuration}); err != nil && c.ctx.Err() == nil {
			c.log.Debug("write audio", "err", err)
		}
	}
}

// supervise follows the channel's events and rejoins when the connection to the hub ends.
func (c *call) supervise() {
	delay := 500 * time.Millisecond
	for {
		c.mu.Lock()
		client := c.client
		c.mu.Unlock()
		c.followEvents(client)
		if c.ctx.Err() != nil || c.leaving.Load() {
			return
		}
		c.log.Warn("connection to hub lost; rejoining", "err", client.Err())
		c.stopListening()
		c.a.setState(control.State{State: "joining", Channel: c.p.channel, UID: c.p.uid, Error: fmt.Sprint(client.Err())})
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(delay):
			}
			jctx, cancel := context.WithTimeout(c.ctx, c.a.cfg.JoinTimeout)
			next, err := c.connect(jctx)
			cancel()
			if err == nil {
				c.mu.Lock()
				c.client = next
				c.mu.Unlock()
				c.publishState()
				c.a.metrics.rejoins.Add(1)
				delay = 500 * time.Millisecond
				break
			}
			c.log.Warn("rejoin failed", "err", err, "retry in", delay)
			c.a.setState(control.State{State: "joining", Channel: c.p.channel, UID: c.p.uid, Error: err.Error()})
			delay = min(delay*2, 30*time.Second)
		}
	}
}

// followEvents handles the hub's events until the client ends.
func (c *call) followEvents(client *rtc.Client) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case m, ok := <-client.Events():
			if !ok {
				return
			}
			c.onEvent(client, m)
		}
	}
}

func (c *call) onEvent(client *rtc.Client, m *rtc.Message) {
	var uid uint32
	if m.UID != nil {
		uid = *m.UID
	}
	ev := control.Event{Event: m.Event, UID: uid, Kind: m.Kind, Channel: c.p.channel, Reason: m.Reason}
	switch m.Event {
	case rtc.EventUserJoined:
		c.setUser(uid, true)
	case rtc.EventUserLeft:
		c.setUser(uid, false)
		c.stopListeningTo(uid)
	case rtc.EventUserPublished:
		if m.Kind == rtc.KindAudio {
			c.listen(client, uid)
		}
	case rtc.EventUserUnpublished:
		if m.Kind == rtc.KindAudio {
			c.stopListeningTo(uid)
		}
	case rtc.EventTokenWillExpire:
		ev.Event = "token-will-expire"
		if c.p.token == "" {
			go c.renew(client)
		}
	case rtc.EventTokenDidExpire, rtc.EventReplaced:
		ev.Event = "error"
		ev.Error = m.Event
	}
	c.a.event(ev)
}

func (c *call) renew(client *rtc.Client) {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	tok, err := c.fetchToken(ctx)
	if err == nil {
		_, err = client.RenewToken(ctx, tok)
	}
	if err != nil {
		c.log.Warn("token renewal failed", "err", err)
		return
	}
	c.log.Info("token renewed")
}

func (c *call) setUser(uid uint32, present bool) {
	c.mu.Lock()
	if present {
		c.users[uid] = true
	} else {
		delete(c.users, uid)
	}
	c.mu.Unlock()
	c.publishState()
}

func (c *call) publishState() {
	c.mu.Lock()
	users := make([]uint32, 0, len(c.users))
	for u := range c.users {
		users = append(users, u)
	}
	c.mu.Unlock()
	sort.Slice(users, func(i, j int) bool { return users[i] < users[j] })
	c.a.setState(control.State{State: "joined", Channel: c.p.channel, UID: c.p.uid, Users: users})
}

// listen subscribes to uid's audio and plays it through the mixer.
func (c *call) listen(client *rtc.Client, uid uint32) {
	if c.spk == nil {
		return
	}
	c.mu.Lock()
	if _, ok := c.listening[uid]; ok {
		c.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	c.listening[uid] = cancel
	c.mu.Unlock()
	c.goRun(func() {
		defer cancel()
		track, err := client.Subscribe(ctx, uid, rtc.KindAudio)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("subscribe to remote audio", "remote", uid, "err", err)
			}
			c.mu.Lock()
			delete(c.listening, uid)
			c.mu.Unlock()
			return
		}
		c.log.Info("playing remote audio", "remote", uid)
		c.play(ctx, track, fmt.Sprint(uid))
	})
}

// play decodes a remote audio track (Opus, or G.711) into the mixer until the track or ctx ends.
func (c *call) play(ctx context.Context, track *webrtc.TrackRemote, key string) {
	decode, err := audioDecoder(track.Codec().MimeType)
	if err != nil {
		c.log.Error("audio decoder", "remote", key, "err", err)
		return
	}
	in := c.mixer.Input(key)
	defer in.Close()
	go func() {
		<-ctx.Done()
		track.SetReadDeadline(time.Now()) // unblock ReadRTP
	}()
	pcm := make([]int16, 0, 5760) // up to 120 ms at 48 kHz
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		out, err := decode(pkt.Payload, pcm[:0])
		if err != nil {
			continue
		}
		in.WriteFrame(out)
	}
}

func (c *call) stopListeningTo(uid uint32) {
	c.mu.Lock()
	cancel := c.listening[uid]
	delete(c.listening, uid)
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (c *call) stopListening() {
	c.mu.Lock()
	l := c.listening
	c.listening = map[uint32]context.CancelFunc{}
	c.mu.Unlock()
	for _, cancel := range l {
		cancel()
	}
}

// stop leaves the channel and releases the devices.
func (c *call) stop() {
	c.leaving.Store(true)
	c.mu.Lock()
	client := c.client
	c.mu.Unlock()
	if client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := client.Leave(ctx); err != nil && !errors.Is(err, context.Canceled) {
			c.log.Debug("leave", "err", err)
		}
		cancel()
	}
	c.cancel()
	c.wg.Wait()
	for _, closer := range []io.Closer{c.cam, c.mic, c.spk} {
		if closer != nil {
			closer.Close()
		}
	}
}

// heardSpeaker lets the ducker hear what the speaker plays.
type heardSpeaker struct {
	device.Speaker
	duck *audio.Ducker
}

func (h heardSpeaker) WriteFrame(pcm []int16) error {
	h.duck.Heard(pcm)
	return h.Speaker.WriteFrame(pcm)
}
