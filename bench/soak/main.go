// Command soak is load held for a long time on one hub (make soak, docs/reliability.md
// "Soak"): a camhub process, and in this process -channels channels, each with one agent
// (agent.New with the synthetic camera and microphone: the real agent code) and three Go
// viewers, the first of whom talks (a looped Opus tone). Every minute it prints the delivery
// of that minute (packets the viewers received over the numbers the device used, from RTP
// sequence numbers, video and audio apart; the talker's packets sent), the hub's RSS,
// goroutines and CPU, and the machine's load; at the end the talker's audio as the agents
// counted it, and a summary against issue 12's bars. It exits non-zero when a minute's
// delivery is below the bar or a session broke; the rest is printed, never asserted.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/bench"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/opus"
	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/internal/freeport"
	"github.com/camagent/camagent/rtc"
)

const (
	soakCert     = "soak-certificate-0123456789abcdef"
	deliveryBar  = 99.9 // % of a minute's packets, every minute (issue 12)
	flatBar      = 5.0  // % of the first minute's RSS and goroutines
	joinParallel = 8    // channels set up at once
)

type options struct {
	channels, minutes  int
	minute             time.Duration
	width, height, fps int
	mic, codec         string
	cpuProfile         string
}

func main() {
	var o options
	flag.IntVar(&o.channels, "channels", 200, "channels, each one agent and three viewers (one talks)")
	flag.IntVar(&o.minutes, "minutes", 10, "how long the load is held, in minutes")
	flag.DurationVar(&o.minute, "minute", time.Minute, "the reporting interval (shorter only to try the runner out)")
	flag.IntVar(&o.width, "width", 64, "the agents' synthetic camera: width")
	flag.IntVar(&o.height, "height", 64, "the agents' synthetic camera: height")
	flag.IntVar(&o.fps, "fps", 5, "the agents' synthetic camera: frame rate")
	flag.StringVar(&o.mic, "microphone", "test", "the agents' microphone: test (the synthetic tone) or null")
	flag.StringVar(&o.codec, "audio-codec", "pcmu", "the agents' audio codec: pcmu (G.711, cheap to encode) or opus")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write this process's CPU profile over the minutes to this file")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "camagent-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mqttAddr, err := freeport.Addr()
	if err != nil {
		return err
	}
	b, err := broker.New(broker.Options{TCPAddr: mqttAddr, AllowAnonymous: true, Logger: slog.New(slog.DiscardHandler),
		MaxClients: 4 * o.channels, MaxPerAddress: 4 * o.channels}) // the hub and every agent, all on 127.0.0.1
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- b.Run(ctx) }()
	defer func() { cancel(); <-brokerDone }()
	select {
	case <-b.Ready():
	case err := <-brokerDone:
		return fmt.Errorf("broker: %w", err)
	}
	hub, err := startHub(ctx, dir, "tcp://"+mqttAddr, soakCert, 8*o.channels)
	if err != nil {
		return err
	}
	defer hub.stop()
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		return err
	}
	tone, err := encodeTone()
	if err != nil {
		return err
	}
	var final atomic.Bool
	env := &soakEnv{hubURL: hub.url, mqtt: "tcp://" + mqttAddr, dir: dir, api: api, cert: soakCert, opus: tone, o: o,
		final: &final, warn: warnHandler()}

	fmt.Printf("soak: %d channels × (agent: synthetic camera %dx%d@%d, microphone %s/%s; 3 viewers, one talking Opus) on one camhub, %d × %v; load %s\n",
		o.channels, o.width, o.height, o.fps, o.mic, o.codec, o.minutes, o.minute, loadavg())
	setup := time.Now()
	chans := make([]*channel, o.channels)
	var wg sync.WaitGroup
	viewCtx, stopViewers := context.WithCancel(ctx)
	defer func() { stopViewers(); wg.Wait() }()
	sem, errs := make(chan struct{}, joinParallel), make(chan error, o.channels)
	for i := range chans {
		ch := &channel{name: fmt.Sprintf("soak%03d", i), id: fmt.Sprintf("soakcam%03d", i)}
		chans[i] = ch
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- env.setUp(ctx, viewCtx, ch, &wg)
		}()
	}
	for range chans {
		if err := <-errs; err != nil {
			return fmt.Errorf("setting up: %w", err)
		}
	}
	fmt.Printf("soak: %d channels set up in %.1f s; load %s\n", o.channels, time.Since(setup).Seconds(), loadavg())

	rep := newReport(o, chans)
	prev, err := hub.sample()
	if err != nil {
		return err
	}
	rep.mark()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	t := time.NewTicker(o.minute)
	defer t.Stop()
	for m := 1; m <= o.minutes; m++ {
		select {
		case <-t.C:
		case <-hub.exited:
			return fmt.Errorf("camhub exited:\n%s", hub.tail())
		}
		s, err := hub.sample()
		if err != nil {
			return err
		}
		rep.minuteLine(m, prev, s)
		prev = s
	}
	// The end: the agents' debug lines say what each received of its talker.
	final.Store(true)
	stopViewers()
	wg.Wait()
	time.Sleep(2 * time.Second) // the hub ends the talkers' tracks at the agents
	for _, ch := range chans {
		cancelAgent(ch)
	}
	return rep.summary()
}

// setUp starts a channel's agent, has it join the channel (a join command through the
// hub's API, as an app would send), then joins the viewers.
func (e *soakEnv) setUp(ctx, viewCtx context.Context, ch *channel, wg *sync.WaitGroup) error {
	actx, stop := context.WithCancel(ctx)
	ch.stop = stop
	if err := e.startAgent(actx, ch); err != nil {
		return err
	}
	if err := bench.PostCommand(e.hubURL, ch.id, `{"action":"join","channel":"`+ch.name+`"}`, 30*time.Second, 250*time.Millisecond); err != nil {
		return fmt.Errorf("join command to %s: %w", ch.id, err)
	}
	return e.joinViewers(viewCtx, ch, wg)
}

// cancelAgent ends the channel's agent and waits for it.
func cancelAgent(ch *channel) {
	if ch.stop == nil {
		return
	}
	ch.stop()
	select {
	case <-ch.agDone:
	case <-time.After(20 * time.Second):
		fmt.Fprintf(os.Stderr, "soak: agent %s did not end in 20 s\n", ch.id)
	}
}

// encodeTone encodes one second of the talker's tone once; every talker loops it, which
// costs no encoding per talker (the pure-Go encoder takes ~0.25 ms a frame: 200 talkers
// would need more than the machine).
func encodeTone() ([][]byte, error) {
	enc, err := opus.NewEncoder()
	if err != nil {
		return nil, err
	}
	tone := audio.NewTone(330, 0.3)
	pcm := make([]int16, device.FrameSamples)
	var out [][]byte
	for range 50 {
		if err := tone.ReadFrame(context.Background(), pcm); err != nil {
			return nil, err
		}
		buf := make([]byte, 1500)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			return nil, fmt.Errorf("encode the tone: %w", err)
		}
		out = append(out, buf[:n])
	}
	return out, nil
}
