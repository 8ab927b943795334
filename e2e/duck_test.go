package e2e

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
)

// TestMicDuck: with micDuckDB 20 the device's microphone, as a user hears it, drops by about
// 20 dB while the user talks to the device, and comes back once the user stops and the hold
// is over. Without a talker nothing is ducked.
func TestMicDuck(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the microphone's level for seconds: not in -short")
	}
	s := startSystemWith(t, func(c *agent.Config) { c.MicDuckDB, c.MicDuckHold = 20, 300*time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const channel = "duck"
	c, _ := s.joinClient(ctx, channel, 78)
	dev := s.deviceInChannel(channel)
	remote, err := c.Subscribe(ctx, dev, rtc.KindAudio)
	must(t, err, "subscribe to the device's audio")
	heard := collectAudio(ctx, remote)
	// level waits, then measures the device's tone over the last half second heard.
	level := func(wait time.Duration) (db, hz float64) {
		time.Sleep(wait)
		pcm := heard()
		if len(pcm) < device.SampleRate/2 {
			t.Fatalf("only %d samples of the device's audio", len(pcm))
		}
		tail := pcm[len(pcm)-device.SampleRate/2:]
		return audio.DBFS(tail), audio.DominantFrequency(tail, device.SampleRate)
	}
	before, hz := level(1500 * time.Millisecond)

	talk, stopTalking := context.WithCancel(ctx)
	_, err = rtctest.PublishTone(talk, c, 1000)
	must(t, err, "talk to the device")
	during, hzDuring := level(1500 * time.Millisecond)
	stopTalking()
	after, _ := level(1500 * time.Millisecond)
	t.Logf("device's %.0f Hz tone as heard: %.1f dBFS before, %.1f dBFS (%.0f Hz) while the user talks, %.1f dBFS after",
		hz, before, during, hzDuring, after)
	if drop := before - during; drop < 15 || drop > 25 {
		t.Errorf("the microphone dropped %.1f dB while the user talked, want about 20", drop)
	}
	if math.Abs(hzDuring-hz) > 5 {
		t.Errorf("while ducked the device sent %.0f Hz, want its %.0f Hz tone, lower", hzDuring, hz)
	}
	if math.Abs(after-before) > 3 {
		t.Errorf("after the talk the microphone is at %.1f dBFS, want %.1f again", after, before)
	}
}
