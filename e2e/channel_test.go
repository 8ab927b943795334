package e2e

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/rtc"
)

// deviceInChannel asks the device to join channel and returns its uid.
func (s *system) deviceInChannel(channel string) uint32 {
	s.t.Helper()
	r := s.command(map[string]any{"action": "join", "channel": channel})
	if !r.OK {
		s.t.Fatalf("device join: %+v", r)
	}
	return r.State.UID
}

// firstFrame subscribes to uid's video and returns the time to the first complete access
// unit and whether it was a keyframe.
func firstFrame(ctx context.Context, t *testing.T, c *rtc.Client, uid uint32) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	track, err := c.Subscribe(ctx, uid, rtc.KindVideo)
	must(t, err, "subscribe video")
	aus, _, err := accessUnits(ctx, track, 1)
	must(t, err, "first access unit")
	return time.Since(start), h264.IsKeyframe(aus[0])
}

// TestOneDeviceFiveViewers: five pion users watch one device; each gets video, and the one
// who arrives late gets a decodable picture at once because the hub asks for a keyframe.
func TestOneDeviceFiveViewers(t *testing.T) {
	s := startSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const channel = "five"
	dev := s.deviceInChannel(channel)

	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[uint32]int{}
	for i := uint32(1); i <= 4; i++ {
		c, res := s.joinClient(ctx, channel, 100+i)
		var seen bool
		for _, u := range res.Users {
			seen = seen || (u.UID == dev && u.Video && u.Audio)
		}
		if !seen {
			t.Fatalf("viewer %d: join reply users %+v, want the device publishing audio and video", i, res.Users)
		}
		track, err := c.Subscribe(ctx, dev, rtc.KindVideo)
		must(t, err, "subscribe")
		wg.Add(1)
		go func(uid uint32) {
			defer wg.Done()
			aus, gaps, err := accessUnits(ctx, track, 60)
			if err != nil || gaps > 0 {
				t.Errorf("viewer %d: %d frames, %d gaps, %v", uid, len(aus), gaps, err)
			}
			mu.Lock()
			counts[uid] = len(aus)
			mu.Unlock()
		}(100 + i)
	}
	// The late one: a random moment into the call, far from the camera's own 2 s keyframes.
	time.Sleep(time.Duration(700+rand.IntN(600)) * time.Millisecond)
	late, _ := s.joinClient(ctx, channel, 105)
	took, key := firstFrame(ctx, t, late, dev)
	t.Logf("late viewer: first frame %s after subscribe (keyframe %v)", took.Round(time.Millisecond), key)
	if !key {
		t.Error("the late viewer's first frame is not a keyframe")
	}
	if took > time.Second {
		t.Errorf("the late viewer waited %s for a decodable picture, want ≤ 1 s", took)
	}
	wg.Wait()
	if len(counts) != 4 {
		t.Errorf("viewers with video: %v", counts)
	}
}
