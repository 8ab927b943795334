package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// fanoutOptions size the one-publisher → N-subscribers run (measurements 3 and 5).
type fanoutOptions struct {
	Levels         []int         // subscriber counts, increasing
	Settle, Window time.Duration // wait after adding subscribers; measuring time per level
	HubPID         int           // the hub's process (0: in this process; no CPU or memory figures)
}

// viewer is one subscriber of the fan-out run.
type viewer struct {
	c       *rtc.Client
	packets atomic.Uint64
	done    chan struct{}
}

// fanout is the state shared by the viewers' readers.
type fanout struct {
	pub       *publisher
	recording atomic.Bool
	mu        sync.Mutex
	lat, latP Durations // every frame; P frames only
}

func (f *fanout) read(ctx context.Context, v *viewer, track *webrtc.TrackRemote) {
	defer close(v.done)
	var r auReader
	stop := context.AfterFunc(ctx, func() { track.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		v.packets.Add(1)
		fr := r.push(pkt, now)
		if fr == nil || !fr.clean || !f.recording.Load() {
			continue
		}
		if sent, ok := f.pub.sentAt(fr.ts); ok {
			idr := f.pub.isIDR(fr.ts)
			f.mu.Lock()
			f.lat = append(f.lat, now.Sub(sent))
			if !idr {
				f.latP = append(f.latP, now.Sub(sent))
			}
			f.mu.Unlock()
		}
	}
}

type fanoutLevel struct {
	n                        int
	lat, latP                Durations
	hubCPU, selfCPU, machine float64 // % of one core
	rssKB                    int64
	inPPS, delivered, mbitIn float64
}

// measureFanout runs one publisher and adds viewers level by level, measuring at each level the
// forwarding latency, the hub's CPU and memory, and how much of the stream each viewer got.
func measureFanout(ctx context.Context, e *env, o fanoutOptions, r *Results, progress func(string)) error {
	const channel = "bench-fanout"
	var idleRSS int64
	if o.HubPID != 0 {
		idleRSS, _, _ = memKB(o.HubPID)
	}
	pub, err := startPublisher(ctx, e, channel, 1, 640, 480)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer pub.stop()
	f := &fanout{pub: pub}
	rctx, stopReaders := context.WithCancel(context.Background())
	var viewers []*viewer
	defer func() {
		stopReaders()
		closeAll(viewers)
	}()

	measure := func(n int) (fanoutLevel, error) {
		lv := fanoutLevel{n: n}
		time.Sleep(o.Settle)
		counts := make([]uint64, len(viewers))
		for i, v := range viewers {
			counts[i] = v.packets.Load()
		}
		pk0, err := e.metric("camhub_forwarded_packets_total")
		if err != nil {
			return lv, err
		}
		by0, _ := e.metric("camhub_forwarded_bytes_total")
		hub, self, machine := startCPU(o.HubPID), startCPU(os.Getpid()), startMachine()
		f.mu.Lock()
		f.lat, f.latP = nil, nil
		f.mu.Unlock()
		f.recording.Store(true)
		time.Sleep(o.Window)
		f.recording.Store(false)
		if o.HubPID != 0 {
			lv.hubCPU = hub.percent()
			lv.rssKB, _, _ = memKB(o.HubPID)
		}
		lv.selfCPU = self.percent()
		lv.machine = machine.percent()
		pk1, err := e.metric("camhub_forwarded_packets_total")
		if err != nil {
			return lv, err
		}
		by1, _ := e.metric("camhub_forwarded_bytes_total")
		var got uint64
		for i, v := range viewers {
			got += v.packets.Load() - counts[i]
		}
		lv.inPPS = (pk1 - pk0) / o.Window.Seconds()
		lv.mbitIn = (by1 - by0) * 8 / o.Window.Seconds() / 1e6
		if n > 0 && pk1 > pk0 {
			lv.delivered = 100 * float64(got) / (float64(n) * (pk1 - pk0))
		}
		f.mu.Lock()
		lv.lat, lv.latP = f.lat, f.latP
		f.lat, f.latP = nil, nil
		f.mu.Unlock()
		return lv, nil
	}

	time.Sleep(time.Second) // the publisher's media reaches the hub
	base, err := measure(0)
	if err != nil {
		return err
	}
	var levels []fanoutLevel
	for _, n := range o.Levels {
		actx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := addViewers(actx, e, f, rctx, channel, &viewers, n)
		cancel()
		if err != nil {
			r.Note("fan-out: stopped adding viewers at %d of %d: %v", len(viewers), n, err)
			break
		}
		lv, err := measure(n)
		if err != nil {
			return err
		}
		levels = append(levels, lv)
		if progress != nil {
			progress(fmt.Sprintf("fan-out %d viewers: p95 %.1f ms, delivered %.1f %%; CPU (%% of one core): hub %.1f, bench process %.0f, whole machine %.0f of %d00",
				n, lv.lat.P(95), lv.delivered, lv.hubCPU, lv.selfCPU, lv.machine, runtime.NumCPU()))
		}
		// Beyond saturation queues only grow: the next level would measure the queue.
		if lv.delivered < 99 || lv.lat.P(95) > 1000 {
			r.Note("fan-out: stopped after N=%d: p95 %.0f ms, delivered %.1f %% — saturated (hub %.0f %%, bench process %.0f %%, whole machine %.0f %% of %d00 %% during the window)",
				n, lv.lat.P(95), lv.delivered, lv.hubCPU, lv.selfCPU, lv.machine, runtime.NumCPU())
			break
		}
	}

	sec3 := "3 forwarding (publisher's first packet → viewer's last packet, per frame)"
	peers95 := map[int]string{1: "2-5 ms", 10: "2-5 ms", 50: "7-9 ms"}
	target95 := map[int]float64{10: 2, 50: 4}
	for _, lv := range levels {
		id := fmt.Sprintf("forward.n%d", lv.n)
		name := fmt.Sprintf("%d viewer(s)", lv.n)
		r.Add(Figure{ID: id + ".p50", Section: sec3, Name: name + " p50", Unit: "ms", Value: lv.lat.P(50), N: len(lv.lat)})
		r.Add(Figure{ID: id + ".p95", Section: sec3, Name: name + " p95", Unit: "ms", Value: lv.lat.P(95), Target: target95[lv.n], Peers: peers95[lv.n], N: len(lv.lat)})
		p99 := ""
		if lv.n == 50 {
			p99 = "10-20 ms"
		}
		r.Add(Figure{ID: id + ".p99", Section: sec3, Name: name + " p99", Unit: "ms", Value: lv.lat.P(99), Peers: p99, N: len(lv.lat),
			Note: fmt.Sprintf("machine busy %.0f %% of %d00 %%", lv.machine, runtime.NumCPU())})
		r.Add(Figure{ID: id + ".p_frames.p95", Section: sec3, Name: name + ", P frames only, p95", Unit: "ms", Value: lv.latP.P(95), N: len(lv.latP)})
	}
	sec5 := "5 hub cost (camhub process, 1 publisher → N viewers)"
	if o.HubPID != 0 {
		r.Add(Figure{ID: "hub.rss.idle", Section: sec5, Name: "hub RSS, no users", Unit: "MB", Value: float64(idleRSS) / 1024, Peers: "15-33 MB"})
		r.Add(Figure{ID: "hub.rss.publisher", Section: sec5, Name: "hub RSS, publisher only", Unit: "MB", Value: float64(base.rssKB) / 1024})
		r.Add(Figure{ID: "hub.cpu.publisher", Section: sec5, Name: "hub CPU, publisher only", Unit: "%core", Value: base.hubCPU})
	}
	r.Add(Figure{ID: "hub.stream", Section: sec5, Name: "stream in (640x480@30 synthetic H.264)", Unit: "Mbit/s", Value: base.mbitIn,
		Note: fmt.Sprintf("%.0f packets/s; an IDR (every 2 s) is %.0f packets", base.inPPS,
			float64(pub.idrPackets.Load())/math.Max(1, float64(pub.idrFrames.Load())))})
	complete, firstIncomplete := 0, 0
	bestPPS := 0.0
	for _, lv := range levels {
		id := fmt.Sprintf("hub.n%d", lv.n)
		name := fmt.Sprintf("N=%d", lv.n)
		if o.HubPID != 0 {
			cpuPer := (lv.hubCPU - base.hubCPU) / float64(lv.n)
			memPer := float64(lv.rssKB-base.rssKB) / 1024 / float64(lv.n)
			r.Add(Figure{ID: id + ".cpu_per_viewer", Section: sec5, Name: name + ": hub CPU per viewer", Unit: "%core", Value: cpuPer, Target: 0.2, Peers: "0.43 %core",
				Note: fmt.Sprintf("hub %.1f %%core total; bench process %.0f; machine %.0f of %d00", lv.hubCPU, lv.selfCPU, lv.machine, runtime.NumCPU())})
			r.Add(Figure{ID: id + ".rss_per_viewer", Section: sec5, Name: name + ": hub RSS per viewer", Unit: "MB", Value: memPer, Target: 1, Peers: "4-5 MB",
				Note: fmt.Sprintf("hub RSS %.0f MB", float64(lv.rssKB)/1024)})
			if lv.hubCPU > 0 && lv.delivered >= 99 {
				bestPPS = math.Max(bestPPS, lv.inPPS*float64(lv.n)/(lv.hubCPU/100))
			}
		}
		r.Add(Figure{ID: id + ".delivered", Section: sec5, Name: name + ": packets delivered to viewers", Unit: "%", Value: lv.delivered, Target: 99, Better: "higher"})
		if lv.delivered >= 99 && firstIncomplete == 0 {
			complete = lv.n
		} else if lv.delivered < 99 && firstIncomplete == 0 {
			firstIncomplete = lv.n
		}
	}
	if o.HubPID != 0 {
		r.Add(Figure{ID: "hub.pps_per_core", Section: sec5, Name: "forwarded packets/s per hub core (best complete level)", Unit: "pkt/s", Value: bestPPS, Better: "higher", Peers: "31000 pkt/s"})
	}
	note := "delivery complete at every level measured"
	if firstIncomplete != 0 {
		note = fmt.Sprintf("first incomplete at N=%d", firstIncomplete)
	}
	r.Add(Figure{ID: "hub.complete_n", Section: sec5, Name: "largest N with ≥ 99 % delivery", Unit: "viewers", Value: float64(complete), Better: "higher", Note: note})
	return nil
}

// addViewers joins and subscribes viewers (four at a time) until there are n.
func addViewers(ctx context.Context, e *env, f *fanout, rctx context.Context, channel string, viewers *[]*viewer, n int) error {
	need := n - len(*viewers)
	if need <= 0 {
		return nil
	}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	base := len(*viewers)
	for i := range need {
		wg.Add(1)
		sem <- struct{}{}
		go func(uid uint32) {
			defer wg.Done()
			defer func() { <-sem }()
			tok, err := e.token(ctx, channel, uid, "subscriber")
			var c *rtc.Client
			if err == nil {
				c, _, err = e.join(ctx, channel, uid, tok)
			}
			var track *webrtc.TrackRemote
			if err == nil {
				track, _, err = subscribeVideo(ctx, c, 1)
				if err != nil {
					c.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			v := &viewer{c: c, done: make(chan struct{})}
			*viewers = append(*viewers, v)
			go f.read(rctx, v, track)
		}(uint32(100 + base + i))
	}
	wg.Wait()
	return firstErr
}

func closeAll(viewers []*viewer) {
	inParallel(len(viewers), 8, func(i int) {
		viewers[i].c.Close()
		<-viewers[i].done
	})
}

// inParallel runs fn(0) … fn(n-1), at most width at a time, and returns when all have.
func inParallel(n, width int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}
