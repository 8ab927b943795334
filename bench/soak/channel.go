package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
)

// viewersPerChannel: three Go viewers, the first of whom talks.
const viewersPerChannel = 3

// channel is one soak channel: an agent (the real agent code, in this process) and its
// viewers.
type channel struct {
	name   string
	id     string // the device id
	uid    uint32 // the device's uid
	ag     *agent.Agent
	agDone chan error
	heard  *heardAudio // what the agent logged of the talker's audio at the end

	video, audio [viewersPerChannel]seqCount
	talkSent     atomic.Int64       // Opus packets the talker wrote
	broken       atomic.Int64       // viewer sessions that ended before the soak did
	lastErr      atomic.Value       // string: the last broken session's error
	stop         context.CancelFunc // ends the agent
}

// soakEnv is what every channel shares.
type soakEnv struct {
	hubURL, mqtt, dir string
	api               *webrtc.API
	cert              string
	opus              [][]byte // the talker's tone, encoded once, looped
	o                 options
	final             *atomic.Bool // the soak is ending: agents log at debug level
	warn              slog.Handler
}

// startAgent makes and runs the channel's agent; it is connected to the broker on return.
func (e *soakEnv) startAgent(ctx context.Context, ch *channel) error {
	cfg := agent.Defaults()
	cfg.ID, cfg.MQTT, cfg.Hub = ch.id, e.mqtt, e.hubURL
	cfg.Camera, cfg.Width, cfg.Height, cfg.FPS = "test", e.o.width, e.o.height, e.o.fps
	cfg.Microphone, cfg.AudioCodec = e.o.mic, e.o.codec
	if e.o.mic == "null" {
		cfg.AudioCodec = "opus"
	}
	cfg.Speaker = "wav:/dev/null" // decoded and mixed as on a device, written nowhere
	cfg.StateDir = filepath.Join(e.dir, ch.id)
	cfg.ICELoopbackOnly = true
	ch.heard = &heardAudio{}
	log := slog.New(&agentLog{final: e.final, warn: e.warn, heard: ch.heard}).With("device", ch.id)
	a, err := agent.New(cfg, log)
	if err != nil {
		return fmt.Errorf("agent %s: %w", ch.id, err)
	}
	ch.ag, ch.uid, ch.agDone = a, cfg.DefaultUID(), make(chan error, 1)
	go func() { ch.agDone <- a.Run(ctx) }()
	select {
	case <-a.Ready():
		return nil
	case err := <-ch.agDone:
		return fmt.Errorf("agent %s ended at start: %w", ch.id, err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("agent %s: not connected to the broker in 30 s", ch.id)
	}
}

// joinViewers joins the channel's viewers and starts their readers; each reader runs until
// ctx ends, counting what it receives, and marks the channel broken if its session ends
// first. It returns once every viewer receives the device's media (or an error).
func (e *soakEnv) joinViewers(ctx context.Context, ch *channel, wg *sync.WaitGroup) error {
	for k := range viewersPerChannel {
		uid := ch.uid + 1 + uint32(k)
		privs := []string{token.PrivJoin, token.PrivSubscribe}
		if k == 0 {
			privs = append(privs, token.PrivPublishAudio)
		}
		tok, _, err := token.MintPrivileges("demo", e.cert, ch.name, uid, privs, 24*time.Hour, time.Now())
		if err != nil {
			return err
		}
		c, _, err := rtc.DialJoin(ctx, rtc.ClientOptions{URL: e.hubURL, API: e.api, Logger: slog.New(e.warn).With("viewer", uid)},
			"demo", ch.name, uid, tok)
		if err != nil {
			return fmt.Errorf("viewer %d of %s: %w", uid, ch.name, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); <-ctx.Done(); c.Close() }()
		if k == 0 {
			if err := e.talk(ctx, ch, c, wg); err != nil {
				return err
			}
		}
		kinds := []struct {
			kind  string
			count *seqCount
		}{{rtc.KindVideo, &ch.video[k]}, {rtc.KindAudio, &ch.audio[k]}}
		for _, m := range kinds {
			if m.kind == rtc.KindAudio && e.o.mic == "null" {
				continue
			}
			var track *webrtc.TrackRemote
			for deadline := time.Now().Add(30 * time.Second); track == nil; {
				if track, err = c.Subscribe(ctx, ch.uid, m.kind); err != nil {
					if time.Now().After(deadline) || ctx.Err() != nil {
						return fmt.Errorf("viewer %d of %s: subscribe %s: %w", uid, ch.name, m.kind, err)
					}
					time.Sleep(200 * time.Millisecond) // the device is still publishing
				}
			}
			wg.Add(1)
			go func() { defer wg.Done(); ch.read(ctx, c, track, m.count) }()
		}
	}
	return nil
}

// read counts track's packets until ctx ends; a session or track that ends before is broken.
func (ch *channel) read(ctx context.Context, c *rtc.Client, track *webrtc.TrackRemote, n *seqCount) {
	for {
		p, _, err := track.ReadRTP()
		if err == nil {
			n.add(p.SequenceNumber)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, io.EOF) || c.Err() != nil {
			ch.broken.Add(1)
			ch.lastErr.Store(fmt.Sprintf("%s: %v (session: %v)", track.Kind(), err, c.Err()))
			return
		}
	}
}

// talk publishes the looped Opus tone from c, paced at one packet per 20 ms, until ctx ends.
func (e *soakEnv) talk(ctx context.Context, ch *channel, c *rtc.Client, wg *sync.WaitGroup) error {
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, "audio", "talker")
	if err != nil {
		return fmt.Errorf("talker track: %w", err)
	}
	tctx, stop := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(device.FrameDuration)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-tctx.Done():
				return
			case <-t.C:
			}
			if track.WriteSample(media.Sample{Data: e.opus[i%len(e.opus)], Duration: device.FrameDuration}) == nil {
				ch.talkSent.Add(1)
			}
		}
	}()
	senders, err := c.Publish(ctx, track)
	if err != nil {
		stop()
		return fmt.Errorf("talker of %s: %w", ch.name, err)
	}
	go peer.DrainRTCP(senders[0], peer.Feedback{})
	context.AfterFunc(ctx, stop)
	return nil
}

// heardAudio is the agent's own count of a remote audio track, from its "remote audio ended"
// log line (agent/remoteaudio.go).
type heardAudio struct {
	mu            sync.Mutex
	packets, lost int64
	tracks        int
}

// agentLog passes an agent's warnings and errors on, and reads its "remote audio ended"
// lines, which it logs at debug level (enabled only once the soak is ending).
type agentLog struct {
	final *atomic.Bool
	warn  slog.Handler
	heard *heardAudio
	attrs []slog.Attr
}

func (h *agentLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.final.Load()
}

func (h *agentLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "remote audio ended" {
		var packets, lost int64
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "packets":
				packets = int64(a.Value.Uint64())
			case "lost":
				lost = int64(a.Value.Uint64())
			}
			return true
		})
		h.heard.mu.Lock()
		h.heard.packets, h.heard.lost = h.heard.packets+packets, h.heard.lost+lost
		h.heard.tracks++
		h.heard.mu.Unlock()
	}
	if r.Level < slog.LevelWarn {
		return nil
	}
	return h.warn.WithAttrs(h.attrs).Handle(ctx, r)
}

func (h *agentLog) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *agentLog) WithGroup(string) slog.Handler { return h }

// warnHandler is where the soak's own clients and the agents log: warnings and errors, to
// stderr.
func warnHandler() slog.Handler {
	return slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
}
