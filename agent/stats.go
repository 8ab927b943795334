package agent

import (
	"time"

	"github.com/camagent/camagent/control"
	"github.com/pion/webrtc/v4"
)

// streamTotals are the cumulative counters of the publish connection that a
// stats event turns into rates.
type streamTotals struct {
	at                      time.Time
	videoBytes, audioBytes  uint64
	packets                 uint64
	frames                  uint64
	lost                    int64
	lossFraction, rttMillis float64
	valid                   bool
}

// reportStats publishes a "stats" event every StatsInterval while the call
// lasts (none when the interval is 0).
func (c *call) reportStats() {
	every := c.a.ctl.StatsInterval
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var prev streamTotals
	var prevPC *webrtc.PeerConnection
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		client, users := c.client, len(c.users)
		c.mu.Unlock()
		var pc *webrtc.PeerConnection
		if client != nil {
			pc = client.PublishConnection()
		}
		if pc == nil {
			prev, prevPC = streamTotals{}, nil
			continue // between connections: nothing to measure
		}
		cur := c.a.totals(pc)
		if pc != prevPC { // a rejoin started the counters again
			prev = streamTotals{}
		}
		s := rates(prev, cur, users, every)
		prev, prevPC = cur, pc
		c.a.event(control.Event{Event: control.EventStats, Channel: c.p.channel, Stats: &s})
	}
}

// totals adds up the counters of pc's outgoing streams (sendcounters.go)
// and takes the round-trip time from the ICE candidate pair in use.
func (a *Agent) totals(pc *webrtc.PeerConnection) streamTotals {
	cur := streamTotals{at: time.Now(), valid: true}
	for _, s := range pc.GetSenders() {
		tr := s.Track()
		if tr == nil {
			continue
		}
		for _, enc := range s.GetParameters().Encodings {
			n, ok := a.counters.get(uint32(enc.SSRC))
			if !ok {
				continue
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				cur.videoBytes += n.bytes
				cur.frames += n.frames
			} else {
				cur.audioBytes += n.bytes
			}
			cur.packets += n.packets
			cur.lost += n.lost
			cur.lossFraction = max(cur.lossFraction, n.fractionLost)
		}
	}
	for _, st := range pc.GetStats() {
		if p, ok := st.(webrtc.ICECandidatePairStats); ok && p.Nominated && p.CurrentRoundTripTime > 0 {
			cur.rttMillis = p.CurrentRoundTripTime * 1000
		}
	}
	return cur
}

// rates turns two totals into the figures of one interval.
func rates(prev, cur streamTotals, users int, every time.Duration) control.Stats {
	secs := every.Seconds()
	if prev.valid {
		secs = cur.at.Sub(prev.at).Seconds()
	}
	if secs <= 0 {
		secs = every.Seconds()
	}
	diff := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	round := func(f float64, unit float64) float64 { return float64(int64(f/unit+0.5)) * unit }
	return control.Stats{
		Interval:     round(secs, 0.001),
		Users:        users,
		VideoBitrate: int64(float64(diff(cur.videoBytes, prev.videoBytes)*8) / secs),
		AudioBitrate: int64(float64(diff(cur.audioBytes, prev.audioBytes)*8) / secs),
		FPS:          round(float64(diff(cur.frames, prev.frames))/secs, 0.1),
		PacketsSent:  diff(cur.packets, prev.packets),
		PacketsLost:  max(cur.lost-prev.lost, 0),
		LossFraction: round(cur.lossFraction, 0.0001),
		RTT:          round(cur.rttMillis, 0.01),
	}
}
