package agent

import (
	"testing"
	"time"
)

func TestStatsRates(t *testing.T) {
	t0 := time.Now()
	prev := streamTotals{at: t0, videoBytes: 1000, audioBytes: 500, packets: 10, frames: 5, lost: 2, valid: true}
	cur := streamTotals{at: t0.Add(2 * time.Second), videoBytes: 251000, audioBytes: 8500, packets: 110, frames: 65, lost: 5,
		lossFraction: 0.0123456, rttMillis: 12.3456, valid: true}
	s := rates(prev, cur, 2, time.Second)
	if s.Interval != 2 || s.Users != 2 || s.VideoBitrate != 1_000_000 || s.AudioBitrate != 32_000 ||
		s.FPS != 30 || s.PacketsSent != 100 || s.PacketsLost != 3 || s.LossFraction != 0.0123 || s.RTT != 12.35 {
		t.Fatalf("rates: %+v", s)
	}
	// Counters that went backwards (a new connection) give zeros, not huge numbers.
	s = rates(cur, prev, 0, time.Second)
	if s.VideoBitrate != 0 || s.PacketsSent != 0 || s.PacketsLost != 0 || s.Interval <= 0 {
		t.Fatalf("rates after a reset: %+v", s)
	}
	// The first interval has no previous totals: rates over the whole interval.
	s = rates(streamTotals{}, streamTotals{at: t0, videoBytes: 1250, valid: true}, 0, time.Second)
	if s.VideoBitrate != 10_000 || s.Interval != 1 {
		t.Fatalf("first interval: %+v", s)
	}
}

func TestControlConfigValidate(t *testing.T) {
	for _, c := range []ControlConfig{
		{MQTTCertFile: "c.pem"},
		{MQTTKeyFile: "k.pem"},
		{StatsInterval: -time.Second},
		{StatsInterval: time.Millisecond},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := DefaultControlConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
