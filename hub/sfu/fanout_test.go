package sfu

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// TestFanoutWorkers: with more subscribers than one goroutine serves, split among workers,
// every viewer still gets every frame, in order, from its first keyframe on.
func TestFanoutWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("streams to many subscribers: not in -short")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3)) // three parts even on a one-core machine
	n := 3*inlineFanout + 5
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, url := startTestService(t, Options{MaxPerAddress: n + 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub, err := joinChannel(ctx, url, api, "wide", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publishSynthCamera(ctx, t, pub, nil)

	const frames = 60
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := joinChannel(ctx, url, api, "wide", uint32(100+i))
			if err != nil {
				errs <- "join: " + err.Error()
				return
			}
			defer c.Close()
			remote, err := c.Subscribe(ctx, 1, rtc.KindVideo)
			if err != nil {
				errs <- "subscribe: " + err.Error()
				return
			}
			sb := samplebuilder.New(256, &codecs.H264Packet{}, 90000)
			var counters []uint64
			for len(counters) < frames {
				remote.SetReadDeadline(time.Now().Add(10 * time.Second))
				p, _, err := remote.ReadRTP()
				if err != nil {
					errs <- "read video: " + err.Error()
					return
				}
				sb.Push(p)
				for s := sb.Pop(); s != nil; s = sb.Pop() {
					if c, _, ok := h264.ParseFrameInfo(s.Data); ok {
						counters = append(counters, c)
					}
				}
			}
			for j := 1; j < len(counters); j++ {
				if counters[j] != counters[j-1]+1 {
					errs <- fmt.Sprintf("viewer %d: frame %d after %d: missing or out of order", 100+i, counters[j], counters[j-1])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	t.Logf("%d viewers in %d parts each got %d frames in order", n, runtime.GOMAXPROCS(0), frames)
}
