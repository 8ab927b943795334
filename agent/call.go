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
	"github.com/camagent/camagent/internal/backoff"
	"github.com/camagent/camagent/rtc"
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
	warm  warmVideo // the camera's frames while a session connects (warmvideo.go)
	audio *webrtc.TrackLocalStaticSample

	// entries are the hubs the call may go through, in order, and entry the one in use
	// (entries.go); only the call's connecting goroutine (startCall, then supervise) uses them.
	entries []string
	entry   int

	mu     sync.Mutex
	sess   *session    // the current connection to the hub (session.go); nil between two
	client *rtc.Client // sess's client, for stats and metrics
	users  map[uint32]bool
}

// startCall opens the devices, joins and publishes; it returns once media flows (or fails).
func (a *Agent) startCall(ctx context.Context, p joinParams) (*call, error) {
	cctx, cancel := context.WithCancel(context.Background())
	c := &call{a: a, p: p, ctx: cctx, cancel: cancel, mixer: audio.NewMixer(audio.MixerLogger(a.log)),
		log: a.log.With("channel", p.channel, "uid", p.uid), users: map[uint32]bool{}, entries: a.cfg.hubEntries(p.hub)}
	if a.cfg.MicDuckDB > 0 {
		c.duck = audio.NewDucker(a.cfg.MicDuckDB, a.cfg.MicDuckHold)
	}
	if err := c.openDevices(); err != nil {
		c.stop()
		return nil, err
	}
	// Media flows into the tracks from now on (dropped until a connection is bound), so the
	// hub has packets to announce as soon as the publish connection is up. The video is held
	// from the camera's first frame, its keyframe, which would otherwise reach the track
	// before connect arms the hold (after the token request) and be lost: the replay then had
	// no keyframe and the camera was asked for one, a frame interval later (warmvideo.go).
	if c.cam != nil {
		c.warm.arm()
	}
	c.goRun(c.pumpVideo)
	c.goRun(c.pumpAudio)
	sess, err := c.connect(ctx)
	for tried := 1; err != nil && tried < len(c.entries) && ctx.Err() == nil && c.nextEntry(err); tried++ {
		sess, err = c.connect(ctx)
	}
	if err != nil {
		c.stop()
		return nil, err
	}
	c.start(sess)
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
	url := strings.TrimRight(c.hub(), "/") + "/api/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.a.cfg.HubKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.a.cfg.HubKey)
	}
	start := time.Now()
	resp, err := c.a.hubHTTP.Do(req)
	c.log.Debug("token request", "took", time.Since(start).Round(time.Millisecond), "err", err)
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

// start runs the speaker's mixer and the supervisor.
func (c *call) start(first *session) {
	c.setSession(first)
	c.publishState()
	if c.spk != nil { // speaker "null": nobody is listened to
		var spk device.Speaker = &reportedSpeaker{Speaker: c.spk, c: c}
		if c.duck != nil {
			spk = heardSpeaker{Speaker: spk, duck: c.duck}
		}
		c.goRun(func() { c.mixer.Run(c.ctx, spk) })
	}
	c.goRun(func() { c.supervise(first) }) // session.go
	c.goRun(c.reportStats)                 // stats.go
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
		if err := c.warm.write(media.Sample{Data: s.Data, Duration: s.Duration}, c.video.WriteSample); err != nil && c.ctx.Err() == nil {
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
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		if err := c.mic.ReadFrame(c.ctx, pcm); err != nil {
			if c.ctx.Err() != nil {
				return
			}
			// ALSA microphones restart themselves and report each failure once: report it,
			// wait a little, and read on.
			delay := bo.Next()
			c.log.Error("microphone failed", "err", err, "retry in", delay)
			c.a.event(control.Event{Event: "error", Channel: c.p.channel, Error: "microphone: " + err.Error()})
			if backoff.Sleep(c.ctx, delay, nil) != nil {
				return
			}
			continue
		}
		bo.Reset()
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

func (c *call) onEvent(s *session, m *rtc.Message) {
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
		s.stopListeningTo(uid)
	case rtc.EventUserPublished:
		if m.Kind == rtc.KindAudio {
			c.listen(s, uid)
		}
	case rtc.EventUserUnpublished:
		if m.Kind == rtc.KindAudio {
			s.stopListeningTo(uid)
		}
	case rtc.EventTokenWillExpire:
		ev.Event = "token-will-expire"
		if c.p.token == "" {
			s.goRun(func() { c.renew(s) })
		}
	case rtc.EventTokenDidExpire, rtc.EventReplaced:
		ev.Event = "error"
		ev.Error = m.Event
	case rtc.EventChannelMoved:
		// Not an event of the MQTT API: the session ends (rtc.ErrChannelMoved) and the call
		// rejoins through the configured hub, which sends it to the channel's new hub.
		c.log.Info("the hub says the channel moved to another hub; rejoining through the configured hub")
		return
	}
	c.a.event(ev)
}

func (c *call) renew(s *session) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	tok, err := c.fetchToken(ctx)
	if err == nil {
		_, err = s.client.RenewToken(ctx, tok)
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
	c.a.postState(control.State{State: "joined", Channel: c.p.channel, UID: c.p.uid, Users: users})
}

// listen subscribes to uid's audio on session s and plays it through the mixer, until the
// user unpublishes or leaves or the session ends.
func (c *call) listen(s *session, uid uint32) {
	if c.spk == nil {
		return
	}
	ctx, ok := s.startListening(uid)
	if !ok {
		return
	}
	s.goRun(func() {
		defer s.stopListeningTo(uid)
		track, err := s.client.Subscribe(ctx, uid, rtc.KindAudio)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("subscribe to remote audio", "remote", uid, "err", err)
			}
			return
		}
		c.log.Info("playing remote audio", "remote", uid)
		c.play(ctx, track, fmt.Sprint(uid))
	})
}

// stop leaves the channel and releases the devices.
func (c *call) stop() {
	c.leaving.Store(true)
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	if sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := sess.client.Leave(ctx); err != nil && !errors.Is(err, context.Canceled) {
			c.log.Debug("leave", "err", err)
		}
		cancel()
	}
	c.cancel()
	c.wg.Wait() // supervise has ended the session it held (session.go)
	if st := c.mixer.Stats(); st.Frames > 0 {
		c.log.Info("speaker mix", "frames", st.Frames, "underruns", st.Underruns, "dropped_samples", st.DroppedSamples, "concealed", st.Concealed,
			"advances", st.Advances, "advanced", st.Advanced)
	}
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

// speakerEventEvery bounds how often a failing speaker is reported on MQTT: device/alsa
// returns each aplay failure once, but a speaker that fails on every frame (a WAV file on
// a full disk) would otherwise send fifty events a second.
const speakerEventEvery = 10 * time.Second

// reportedSpeaker publishes the speaker's failures as MQTT error events ("speaker: …"),
// as the camera's and the microphone's are; the mixer (device/audio) logs them.
type reportedSpeaker struct {
	device.Speaker
	c    *call
	last time.Time // of the last event; only the mixer's goroutine writes
}

func (r *reportedSpeaker) WriteFrame(pcm []int16) error {
	err := r.Speaker.WriteFrame(pcm)
	if err != nil && time.Since(r.last) >= speakerEventEvery {
		r.last = time.Now()
		r.c.a.event(control.Event{Event: "error", Channel: r.c.p.channel, Error: "speaker: " + err.Error()})
	}
	return err
}
