package main

import (
	"fmt"
	"time"

	"github.com/camagent/camagent/bench"
)

// ms is a duration in milliseconds, for a figure.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// figures are a broker run's figures for bench/results.json.
func (r result) figures() []bench.Figure {
	sec := fmt.Sprintf("scale: %d devices' command round trips (%s broker)", r.Devices, r.Broker)
	id := "scale." + r.Broker + "."
	f := []bench.Figure{
		{ID: id + "answered", Section: sec, Name: "commands answered", Unit: "commands", Value: float64(r.Answered), Target: float64(r.Devices), Better: "higher", N: r.Devices},
		{ID: id + "connect", Section: sec, Name: "fleet connected and subscribed", Unit: "s", Value: r.ConnectS, N: r.Devices},
		{ID: id + "rtt.p50", Section: sec, Name: "command round trip p50", Unit: "ms", Value: r.P50ms, N: r.Answered},
		{ID: id + "rtt.p95", Section: sec, Name: "command round trip p95", Unit: "ms", Value: r.P95ms, N: r.Answered},
		{ID: id + "rtt.p99", Section: sec, Name: "command round trip p99", Unit: "ms", Value: r.P99ms, N: r.Answered,
			Note: "one status command per device, all sent at once by one hub-side client"},
	}
	if r.BrokerRSSM > 0 {
		f = append(f, bench.Figure{ID: id + "rss", Section: sec, Name: r.RSSName, Unit: "MB", Value: r.BrokerRSSM})
	}
	if s := r.Soak; s != nil {
		sec := fmt.Sprintf("scale: %d devices' command round trips held %d min (%s broker)", r.Devices, s.Minutes, r.Broker)
		note := fmt.Sprintf("a status command to every device every %.0f s; load %s", s.EveryS, s.Load)
		f = append(f,
			bench.Figure{ID: id + "soak.unanswered", Section: sec, Name: "commands unanswered", Unit: "commands", Value: float64(s.Unanswered), Better: "lower", N: s.Sent, Note: note},
			bench.Figure{ID: id + "soak.rtt.p50", Section: sec, Name: "command round trip p50", Unit: "ms", Value: s.P50ms, N: s.Answered},
			bench.Figure{ID: id + "soak.rtt.p99", Section: sec, Name: "command round trip p99", Unit: "ms", Value: s.P99ms, N: s.Answered},
			bench.Figure{ID: id + "soak.rtt.worst_minute_p99", Section: sec, Name: "worst minute's round trip p99", Unit: "ms", Value: s.WorstP99ms, N: s.Minutes})
		if s.RSSLast > 0 {
			f = append(f, bench.Figure{ID: id + "soak.rss", Section: sec, Name: r.RSSName + " at the end", Unit: "MB", Value: s.RSSLast,
				Note: fmt.Sprintf("%.1f MB after the first minute", s.RSSFirst)})
		}
	}
	return f
}

// relayResult is the relay run's figures.
type relayResult struct {
	viewers, complete, keyStart int
	perHub                      []int
	above                       int
	copies                      float64
	origin50, origin95          time.Duration
	relayed50, relayed95        time.Duration
	load                        string
}

func (r relayResult) figures() []bench.Figure {
	sec := fmt.Sprintf("scale: one publisher, %d viewers across 3 relaying hubs", r.viewers)
	note := fmt.Sprintf("placed %v, relayAbove %d; load %s", r.perHub, r.above, r.load)
	return []bench.Figure{
		{ID: "scale.relay.complete", Section: sec, Name: "viewers with every frame from their first", Unit: "viewers", Value: float64(r.complete), Target: float64(r.viewers), Better: "higher", N: r.viewers, Note: note},
		{ID: "scale.relay.keyframe", Section: sec, Name: "viewers whose first frame is a keyframe", Unit: "viewers", Value: float64(r.keyStart), Target: float64(r.viewers), Better: "higher", N: r.viewers},
		{ID: "scale.relay.uplink", Section: sec, Name: "publisher's uplink", Unit: "copies", Value: r.copies, Note: "its ICE transport's bytes sent over the RTP it wrote"},
		{ID: "scale.relay.origin.p95", Section: sec, Name: "a frame at an origin viewer after the first origin viewer, p95", Unit: "ms", Value: ms(r.origin95)},
		{ID: "scale.relay.relayed.p50", Section: sec, Name: "a frame at a relayed viewer after the first origin viewer, p50", Unit: "ms", Value: ms(r.relayed50)},
		{ID: "scale.relay.relayed.p95", Section: sec, Name: "a frame at a relayed viewer after the first origin viewer, p95", Unit: "ms", Value: ms(r.relayed95)},
	}
}

// resumeBar is issue 16's bound on a call's recovery after its hub is killed.
const resumeBar = 5 * time.Second

func (r failoverResult) figures() []bench.Figure {
	sec := fmt.Sprintf("scale: kill -9 of the channel's hub (3 camhub processes, Redis, %d viewers)", r.Viewers)
	note := fmt.Sprintf("lease %v; load %s", failoverLease, r.Load)
	rec := func(p int) float64 { return pct(r.Recovery, p).Seconds() }
	return []bench.Figure{
		{ID: "scale.failover.recovery.p50", Section: sec, Name: "kill → every viewer's video again p50", Unit: "s", Value: rec(50), N: len(r.Recovery), Note: note},
		{ID: "scale.failover.recovery.p95", Section: sec, Name: "kill → every viewer's video again p95", Unit: "s", Value: rec(95), Target: resumeBar.Seconds(), N: len(r.Recovery)},
		{ID: "scale.failover.recovery.max", Section: sec, Name: "kill → every viewer's video again, slowest", Unit: "s", Value: rec(100), N: len(r.Recovery)},
		{ID: "scale.failover.join.direct.p50", Section: sec, Name: "join (dial + join reply) at the channel's hub p50", Unit: "ms", Value: ms(pct(r.Direct, 50)), N: len(r.Direct)},
		{ID: "scale.failover.join.redirect.p50", Section: sec, Name: "join through another hub (one redirect) p50", Unit: "ms", Value: ms(pct(r.Redirected, 50)), N: len(r.Redirected)},
		{ID: "scale.failover.join.redirect.p95", Section: sec, Name: "join through another hub (one redirect) p95", Unit: "ms", Value: ms(pct(r.Redirected, 95)), N: len(r.Redirected)},
	}
}
