package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/alsa"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/opus"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// Tone bursts for the audio path: burstLen of 1 kHz every burstEvery, silence between.
const (
	burstLen   = 200 * time.Millisecond
	burstEvery = time.Second
	burstAmp   = 0.5
	onsetLevel = 3000 // |sample| that counts as sound (silence is exact zeros)
)

// onsets matches detected onsets to the bursts sent before them.
type onsets struct {
	mu    sync.Mutex
	sent  []time.Time
	next  int
	delay Durations
	also  *onsets // another listener of the same bursts, if any
}

func (o *onsets) burst(t time.Time) {
	o.mu.Lock()
	o.sent = append(o.sent, t)
	o.mu.Unlock()
	if o.also != nil {
		o.also.burst(t)
	}
}

// heard records an onset detected at t: the latest burst sent before it, if not matched yet.
func (o *onsets) heard(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.sent) - 1; i >= o.next; i-- {
		if !o.sent[i].After(t) {
			if d := t.Sub(o.sent[i]); d < burstEvery-burstLen {
				o.delay = append(o.delay, d)
			}
			o.next = i + 1
			return
		}
	}
}

// detector finds the start of each burst in a stream of PCM chunks.
type detector struct {
	quiet int // consecutive quiet chunks
	o     *onsets
}

func (d *detector) chunk(pcm []int16, at time.Time) {
	loud := false
	for _, v := range pcm {
		if v > onsetLevel || v < -onsetLevel {
			loud = true
			break
		}
	}
	if loud && d.quiet >= 5 {
		d.o.heard(at)
	}
	if loud {
		d.quiet = 0
	} else {
		d.quiet++
	}
}

// burstFrames calls write with 20 ms frames, in real time, until ctx ends: silence, and a
// burst every burstEvery (its first frame's write time goes to o).
func burstFrames(ctx context.Context, o *onsets, write func([]int16) error) {
	pacer := audio.NewPacer(device.FrameDuration)
	pcm := make([]int16, device.FrameSamples)
	perBurst := int(burstEvery / device.FrameDuration)
	loud := int(burstLen / device.FrameDuration)
	phase := 0.0
	for i := 0; ; i++ {
		if pacer.Wait(ctx) != nil {
			return
		}
		k := i % perBurst
		if k < loud && i >= 2*perBurst { // two quiet seconds first
			phase = audio.Sine(pcm, device.SampleRate, 1000, burstAmp, phase)
		} else {
			clear(pcm)
			phase = 0
		}
		if k == 0 && i >= 2*perBurst {
			o.burst(time.Now())
		}
		if write(pcm) != nil {
			return
		}
	}
}

// measureAudio runs camagent with ALSA devices made of alsa-lib's file plugin over FIFOs: the
// bench writes the microphone's PCM and reads the speaker's, in real time, with tone bursts.
func measureAudio(ctx context.Context, agentBin string, hub *hubProcess, dir string, window time.Duration, r *Results) error {
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	micFifo, spkFifo := filepath.Join(home, "mic.fifo"), filepath.Join(home, "spk.fifo")
	for _, f := range []string{micFifo, spkFifo} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			return fmt.Errorf("mkfifo: %w", err)
		}
	}
	// O_RDWR: opening never blocks on the other end
	mic, err := os.OpenFile(micFifo, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer mic.Close()
	spk, err := os.OpenFile(spkFifo, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer spk.Close()
	asoundrc := fmt.Sprintf(`pcm.benchspk {
	type file
	slave.pcm null
	file %q
	format raw
}
pcm.benchmic {
	type file
	slave.pcm null
	file "/dev/null"
	infile %q
	format raw
}
`, spkFifo, micFifo)
	if err := os.WriteFile(filepath.Join(home, ".asoundrc"), []byte(asoundrc), 0o644); err != nil {
		return err
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var toEar, toSpeaker, toHubOut onsets
	toSpeaker.also = &toHubOut
	// the microphone: real-time PCM with bursts, from before the call starts
	go burstFrames(actx, &toEar, func(pcm []int16) error {
		b := make([]byte, 2*len(pcm))
		for i, v := range pcm {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
		}
		_, err := mic.Write(b)
		return err
	})
	// the sound card's share first, alone: the agent's own speaker code on the same PCM
	card, err := measureCard(ctx, home, spk)
	if err != nil {
		return fmt.Errorf("measuring aplay and the card alone: %w", err)
	}
	// the speaker: what aplay writes, as it comes
	go readSpeaker(actx, spk, &detector{o: &toSpeaker})

	cm, a, err := startAgentProcess(ctx, agentBin, hub, dir, "bench-audio", []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")},
		"--camera", "null", "--microphone", "alsa:benchmic", "--speaker", "alsa:benchspk")
	if err != nil {
		return err
	}
	defer a.stop()
	defer cm.close()
	const channel = "bench-audio"
	rep, err := cm.do(ctx, map[string]any{"action": "join", "channel": channel})
	if err != nil {
		return fmt.Errorf("%w (log %s)", err, a.log.Name())
	}
	// the remote ear: a Go user decoding the device's Opus
	ear, _, err := hub.joinWithToken(ctx, channel, 700)
	if err != nil {
		return err
	}
	defer ear.Close()
	at, err := ear.Subscribe(ctx, rep.State.UID, rtc.KindAudio)
	if err != nil {
		return err
	}
	go listen(actx, at, &detector{o: &toEar})
	// the remote mouth: a Go user publishing bursts
	mouth, _, err := hub.joinWithToken(ctx, channel, 701)
	if err != nil {
		return err
	}
	defer mouth.Close()
	if err := publishBursts(actx, mouth, &toSpeaker); err != nil {
		return err
	}
	// a third Go user hears the mouth as the hub forwards it: the hub's share of the path
	hubEar, _, err := hub.joinWithToken(ctx, channel, 702)
	if err != nil {
		return err
	}
	defer hubEar.Close()
	mt, err := hubEar.Subscribe(ctx, 701, rtc.KindAudio)
	if err != nil {
		return fmt.Errorf("subscribing to the mouth: %w", err)
	}
	go listen(actx, mt, &detector{o: &toHubOut})
	time.Sleep(2*time.Second + window)
	cancel()
	toEar.mu.Lock()
	toSpeaker.mu.Lock()
	defer toEar.mu.Unlock()
	defer toSpeaker.mu.Unlock()
	toHubOut.mu.Lock()
	defer toHubOut.mu.Unlock()
	sec := "7 audio path (tone burst onset, ALSA file plugin over FIFOs)"
	r.Add(Figure{ID: "audio.mic_to_ear.p50", Section: sec, Name: "microphone → remote ear p50", Unit: "ms", Value: toEar.delay.P(50), N: len(toEar.delay),
		Note: fmt.Sprintf("%d bursts sent", len(toEar.sent))})
	r.Add(Figure{ID: "audio.mic_to_ear.p95", Section: sec, Name: "microphone → remote ear p95", Unit: "ms", Value: toEar.delay.P(95), N: len(toEar.delay)})
	r.Add(Figure{ID: "audio.mouth_to_speaker.p50", Section: sec, Name: "remote mouth → speaker p50", Unit: "ms", Value: toSpeaker.delay.P(50), N: len(toSpeaker.delay),
		Note: fmt.Sprintf("%d bursts sent; at the FIFO, so with the sound card's share below", len(toSpeaker.sent))})
	r.Add(Figure{ID: "audio.mouth_to_speaker.p95", Section: sec, Name: "remote mouth → speaker p95", Unit: "ms", Value: toSpeaker.delay.P(95), N: len(toSpeaker.delay)})
	r.Add(Figure{ID: "audio.card_alone.p50", Section: sec, Name: "  the sound card's share (aplay, card, file plugin) p50", Unit: "ms", Value: card.P(50), N: len(card),
		Note: "the agent's speaker fed bursts directly; the file plugin writes each sample one ALSA buffer (60 ms) late"})
	r.Add(Figure{ID: "audio.card_alone.p95", Section: sec, Name: "  the sound card's share (aplay, card, file plugin) p95", Unit: "ms", Value: card.P(95), N: len(card)})
	agentOnly := toSpeaker.delay.Minus(time.Duration(card.P(50) * float64(time.Millisecond)))
	r.Add(Figure{ID: "audio.mouth_to_card.p50", Section: sec, Name: "remote mouth → speaker, excluding the sound card p50", Unit: "ms", Value: agentOnly.P(50), N: len(agentOnly),
		Note: "each burst's delay less the card's p50"})
	r.Add(Figure{ID: "audio.mouth_to_card.p95", Section: sec, Name: "remote mouth → speaker, excluding the sound card p95", Unit: "ms", Value: agentOnly.P(95), N: len(agentOnly), Target: 40})
	r.Add(Figure{ID: "audio.mouth_to_hub_out.p50", Section: sec, Name: "  remote mouth → hub out (a Go user's decode) p50", Unit: "ms", Value: toHubOut.delay.P(50), N: len(toHubOut.delay),
		Note: "the rest of the speaker figure is the agent: RTP in, decode, mixer, aplay"})
	r.Add(Figure{ID: "audio.mouth_to_hub_out.p95", Section: sec, Name: "  remote mouth → hub out (a Go user's decode) p95", Unit: "ms", Value: toHubOut.delay.P(95), N: len(toHubOut.delay)})
	return nil
}

// readSpeaker feeds d with the speaker FIFO's PCM as it comes, until ctx ends.
func readSpeaker(ctx context.Context, spk *os.File, d *detector) {
	b := make([]byte, 2*device.FrameSamples/4) // 5 ms reads: onset resolution
	pcm := make([]int16, len(b)/2)
	for ctx.Err() == nil {
		spk.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := spk.Read(b)
		if err != nil {
			continue
		}
		at := time.Now()
		for i := range n / 2 {
			pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
		}
		d.chunk(pcm[:n/2], at)
	}
}

// measureCard plays bursts through the agent's own speaker (device/alsa with the agent's
// defaults) on the bench's file-plugin PCM, written in real time as the mixer does: what the
// speaker figure owes to aplay, the card's start level (--start-delay) and the file plugin,
// which keeps one ALSA buffer of written audio before it writes to the FIFO (alsa-lib
// pcm_file.c writes only what exceeds the buffer). The rest of the speaker figure is the
// agent's: RTP in, jitter buffer, decode, mixer.
func measureCard(ctx context.Context, home string, spk *os.File) (Durations, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second+6*burstEvery)
	defer cancel()
	s, err := alsa.OpenSpeaker(cctx, "benchspk", alsa.Options{Env: []string{"HOME=" + home}})
	if err != nil {
		return nil, err
	}
	var o onsets
	done := make(chan struct{})
	go func() {
		defer close(done)
		readSpeaker(cctx, spk, &detector{o: &o})
	}()
	burstFrames(cctx, &o, s.WriteFrame)
	s.Close()
	<-done
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.delay) == 0 {
		return nil, fmt.Errorf("no burst came out of the FIFO (%d sent)", len(o.sent))
	}
	return o.delay, nil
}

// listen decodes a remote Opus track and feeds the detector as packets arrive.
func listen(ctx context.Context, t *webrtc.TrackRemote, d *detector) {
	dec, err := opus.NewDecoder()
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { t.SetReadDeadline(time.Now()) })
	defer stop()
	pcm := make([]int16, 5760)
	buf := make([]byte, 1500)
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		at := time.Now()
		var pkt rtp.Packet
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		if k, err := dec.Decode(pkt.Payload, pcm); err == nil {
			d.chunk(pcm[:k], at)
		}
	}
}

// publishBursts publishes an Opus stream of silence and bursts from c.
func publishBursts(ctx context.Context, c *rtc.Client, o *onsets) error {
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench-mouth")
	if err != nil {
		return err
	}
	enc, err := opus.NewEncoder()
	if err != nil {
		return err
	}
	buf := make([]byte, 1500)
	go burstFrames(ctx, o, func(pcm []int16) error {
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			return nil
		}
		return track.WriteSample(media.Sample{Data: buf[:n], Duration: device.FrameDuration})
	})
	senders, err := c.Publish(ctx, track)
	if err != nil {
		return err
	}
	go peer.DrainRTCP(senders[0], peer.Feedback{})
	return nil
}
