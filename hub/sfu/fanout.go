package sfu

import (
	"runtime"
	"sync"

	"github.com/pion/rtp"
)

// inlineFanout: up to this many subscribers, a track's reading goroutine writes each packet to
// them itself; above it, the subscribers are split among fan-out workers, one per CPU, so the
// last of 200 viewers does not wait for the 199 before it to be encrypted and sent.
const inlineFanout = 16

// maxFanWorkers bounds the workers of one track.
const maxFanWorkers = 8

// fanJob is one packet for one part of a track's subscribers.
type fanJob struct {
	pkt   *rtp.Packet
	outs  []*outlet
	start bool
	wg    *sync.WaitGroup
}

// fanout writes a track's packets to its subscribers. It belongs to the track's reading
// goroutine (forward), which starts its workers when it first needs them and stops them, and
// waits for them, when it returns.
type fanout struct {
	t       *track
	workers []chan fanJob
	wg      sync.WaitGroup // the workers
}

// send writes pkt to outs. It returns once every write is done: the caller may then reuse pkt.
// pkt is only read while it is shared among the workers (pion copies the header it changes).
func (f *fanout) send(pkt *rtp.Packet, outs []*outlet, start bool) {
	parts := min(runtime.GOMAXPROCS(0), maxFanWorkers+1)
	if len(outs) <= inlineFanout || parts < 2 {
		f.t.deliver(pkt, outs, start)
		return
	}
	for len(f.workers) < parts-1 {
		jobs := make(chan fanJob)
		f.workers = append(f.workers, jobs)
		f.wg.Add(1)
		go f.work(jobs)
	}
	size := (len(outs) + parts - 1) / parts
	var done sync.WaitGroup
	for i := 1; i < parts && i*size < len(outs); i++ {
		done.Add(1)
		f.workers[i-1] <- fanJob{pkt: pkt, outs: outs[i*size : min(len(outs), (i+1)*size)], start: start, wg: &done}
	}
	f.t.deliver(pkt, outs[:size], start)
	done.Wait()
}

func (f *fanout) work(jobs <-chan fanJob) {
	defer f.wg.Done()
	for j := range jobs {
		f.t.deliver(j.pkt, j.outs, j.start)
		j.wg.Done()
	}
}

// stop ends the workers and waits for them.
func (f *fanout) stop() {
	for _, w := range f.workers {
		close(w)
	}
	f.workers = nil
	f.wg.Wait()
}

// deliver writes pkt to each outlet of outs in turn; a waiting outlet opens at a start packet
// (see keyGate) once it can receive.
func (t *track) deliver(pkt *rtp.Packet, outs []*outlet, start bool) {
	for _, o := range outs {
		if o.waiting.Load() {
			if !start || !o.canReceive() {
				continue
			}
			o.waiting.Store(false)
		}
		_ = t.write(o, pkt) // logged in write; the next packet tries again
	}
}
