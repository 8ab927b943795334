package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/rtc"
)

// joinStages are the moments of one MQTT join as a Go user already in the channel sees them.
type joinStages struct {
	reply, joined, published, firstPacket, keyframe time.Duration // since the command was published
}

// measureJoins publishes n MQTT joins (each followed by a leave) and times each one to the
// first decodable video frame at a user already in the channel.
func measureJoins(ctx context.Context, s *inProcess, n int, r *Results) error {
	const channel, me = "bench-join", uint32(7001)
	c, _, err := s.joinWithToken(ctx, channel, me)
	if err != nil {
		return err
	}
	defer c.Close()
	cm, err := newCommander(s.broker, s.agentID)
	if err != nil {
		return err
	}
	defer cm.close()
	var st []joinStages
	subWarm := Durations{}
	for i := range n {
		j, err := oneJoin(ctx, c, cm, channel)
		if err != nil {
			return fmt.Errorf("join %d: %w", i+1, err)
		}
		st = append(st, j)
		if i == 0 {
			subWarm = append(subWarm, j.firstPacket-j.published)
		}
	}
	pick := func(f func(joinStages) time.Duration) Durations {
		var d Durations
		for _, j := range st {
			d = append(d, f(j))
		}
		return d
	}
	total := pick(func(j joinStages) time.Duration { return j.keyframe })
	if os.Getenv("CAMBENCH_JOIN_DEBUG") != "" {
		for i, j := range st {
			fmt.Fprintf(os.Stderr, "join %2d: joined %6.1f published %6.1f first packet %6.1f keyframe %6.1f reply %6.1f\n",
				i+1, ms(j.joined), ms(j.published), ms(j.firstPacket), ms(j.keyframe), ms(j.reply))
		}
	}
	sec := "1 join (MQTT → first decodable frame)"
	r.Add(Figure{ID: "join.total.p50", Section: sec, Name: "join → first decodable frame p50", Unit: "ms", Value: total.P(50), Target: 100, N: len(st)})
	r.Add(Figure{ID: "join.total.p95", Section: sec, Name: "join → first decodable frame p95", Unit: "ms", Value: total.P(95), Target: 150, N: len(st),
		Note: "every join: " + msList(total)})
	stages := []struct {
		id, name string
		f        func(joinStages) time.Duration
	}{
		{"join.cmd_to_userjoined", "  command → user-joined (MQTT, token, signalling join)", func(j joinStages) time.Duration { return j.joined }},
		{"join.userjoined_to_published", "  user-joined → user-published video (publish, ICE, DTLS, first RTP)", func(j joinStages) time.Duration { return j.published - j.joined }},
		{"join.published_to_firstpacket", "  user-published → first packet at viewer (subscribe, offer/answer)", func(j joinStages) time.Duration { return j.firstPacket - j.published }},
		{"join.firstpacket_to_keyframe", "  first packet → IDR complete", func(j joinStages) time.Duration { return j.keyframe - j.firstPacket }},
		{"join.cmd_to_reply", "  command → MQTT reply (device says joined)", func(j joinStages) time.Duration { return j.reply }},
	}
	for _, sg := range stages {
		d := pick(sg.f)
		r.Add(Figure{ID: sg.id + ".p50", Section: sec, Name: sg.name + " p50", Unit: "ms", Value: d.P(50), N: len(d)})
	}
	return nil
}

func oneJoin(ctx context.Context, c *rtc.Client, cm *commander, channel string) (joinStages, error) {
	var j joinStages
	t0, replies, err := cm.send(map[string]any{"action": "join", "channel": channel})
	if err != nil {
		return j, err
	}
	var rep reply
	gotReply := make(chan error, 1)
	go func() {
		select {
		case rep = <-replies:
			if !rep.OK {
				gotReply <- fmt.Errorf("device refused the join: %s", rep.Error)
				return
			}
			gotReply <- nil
		case <-time.After(20 * time.Second):
			gotReply <- fmt.Errorf("no reply in 20 s")
		}
	}()
	var devUID uint32
	at, err := waitEvent(ctx, c, 20*time.Second, func(m *rtc.Message) bool {
		if m.Event == rtc.EventUserJoined && m.UID != nil {
			devUID = *m.UID
			return true
		}
		return false
	})
	if err != nil {
		return j, fmt.Errorf("user-joined: %w", err)
	}
	j.joined = at.Sub(t0)
	at, err = waitEvent(ctx, c, 20*time.Second, isEvent(rtc.EventUserPublished, devUID, rtc.KindVideo))
	if err != nil {
		return j, fmt.Errorf("user-published: %w", err)
	}
	j.published = at.Sub(t0)
	track, first, err := subscribeVideo(ctx, c, devUID)
	if err != nil {
		return j, err
	}
	j.firstPacket = first.Sub(t0)
	keyAt, err := firstDecodable(ctx, track)
	if err != nil {
		return j, fmt.Errorf("waiting for a keyframe: %w", err)
	}
	j.keyframe = keyAt.Sub(t0)
	if err := <-gotReply; err != nil {
		return j, err
	}
	j.reply = rep.at.Sub(t0)
	if _, err := cm.do(ctx, map[string]any{"action": "leave"}); err != nil {
		return j, err
	}
	if _, err := waitEvent(ctx, c, 10*time.Second, isEvent(rtc.EventUserLeft, devUID, "")); err != nil {
		return j, fmt.Errorf("user-left: %w", err)
	}
	return j, nil
}

// lateJoin is one late joiner's stages, from the start of its signalling connection.
type lateJoin struct {
	joined, firstPacket, keyframe time.Duration
}

// measureLateJoins joins n Go viewers one after another, each at a random moment of a running
// call, and times each to its first decodable frame.
func measureLateJoins(ctx context.Context, s *inProcess, n int, maxWait time.Duration, r *Results) error {
	const channel = "bench-late"
	cm, err := newCommander(s.broker, s.agentID)
	if err != nil {
		return err
	}
	defer cm.close()
	rep, err := cm.do(ctx, map[string]any{"action": "join", "channel": channel})
	if err != nil {
		return err
	}
	defer cm.do(context.Background(), map[string]any{"action": "leave"})
	devUID := rep.State.UID
	time.Sleep(500 * time.Millisecond) // the call is running: media flows to the hub
	var all []lateJoin
	for i := range n {
		uid := uint32(8000 + i)
		tok, err := s.token(ctx, channel, uid, "subscriber")
		if err != nil {
			return err
		}
		time.Sleep(time.Duration(rand.Int64N(int64(maxWait))))
		t0 := time.Now()
		c, res, err := s.join(ctx, channel, uid, tok)
		if err != nil {
			return err
		}
		var lj lateJoin
		lj.joined = time.Since(t0)
		published := false
		for _, u := range res.Users {
			published = published || u.UID == devUID && u.Video
		}
		if !published {
			c.Close()
			return fmt.Errorf("late joiner %d: the device publishes no video", i)
		}
		track, first, err := subscribeVideo(ctx, c, devUID)
		if err != nil {
			c.Close()
			return err
		}
		lj.firstPacket = first.Sub(t0)
		keyAt, err := firstDecodable(ctx, track)
		c.Leave(ctx)
		if err != nil {
			return fmt.Errorf("late joiner %d: %w", i, err)
		}
		lj.keyframe = keyAt.Sub(t0)
		all = append(all, lj)
	}
	var total, joined, first, key Durations
	for _, lj := range all {
		total = append(total, lj.keyframe)
		joined = append(joined, lj.joined)
		first = append(first, lj.firstPacket-lj.joined)
		key = append(key, lj.keyframe-lj.firstPacket)
	}
	sec := "2 late joiner (join running call → first decodable frame)"
	peers := "1200 ms"
	r.Add(Figure{ID: "late.total.p50", Section: sec, Name: "late joiner → first decodable frame p50", Unit: "ms", Value: total.P(50), Peers: peers, N: len(all)})
	r.Add(Figure{ID: "late.total.p95", Section: sec, Name: "late joiner → first decodable frame p95", Unit: "ms", Value: total.P(95), Target: 150, Peers: "1950 ms", N: len(all)})
	r.Add(Figure{ID: "late.join.p50", Section: sec, Name: "  dial + join reply p50", Unit: "ms", Value: joined.P(50), N: len(all)})
	r.Add(Figure{ID: "late.firstpacket.p50", Section: sec, Name: "  join reply → first packet (subscribe, ICE, DTLS) p50", Unit: "ms", Value: first.P(50), N: len(all)})
	r.Add(Figure{ID: "late.keyframe.p50", Section: sec, Name: "  first packet → IDR complete p50", Unit: "ms", Value: key.P(50), N: len(all)})
	return nil
}

// measureGlass reads n frames of a running call at one Go viewer and times each from the
// synthetic camera's capture time (its SEI) to the frame's last packet.
func measureGlass(ctx context.Context, s *inProcess, n int, r *Results) error {
	const channel, me = "bench-glass", uint32(9001)
	cm, err := newCommander(s.broker, s.agentID)
	if err != nil {
		return err
	}
	defer cm.close()
	rep, err := cm.do(ctx, map[string]any{"action": "join", "channel": channel})
	if err != nil {
		return err
	}
	defer cm.do(context.Background(), map[string]any{"action": "leave"})
	c, _, err := s.joinWithToken(ctx, channel, me)
	if err != nil {
		return err
	}
	defer c.Close()
	track, _, err := subscribeVideo(ctx, c, rep.State.UID)
	if err != nil {
		return err
	}
	var all, idr, p Durations
	var unclean int
	gctx, cancel := context.WithTimeout(ctx, time.Duration(n)*time.Second/10+30*time.Second)
	defer cancel()
	err = readFrames(gctx, track, func(f *frame) bool {
		if !f.clean {
			unclean++
			return true
		}
		_, capture, ok := h264.ParseFrameInfo(f.au)
		if !ok {
			unclean++
			return true
		}
		d := f.done.Sub(capture)
		all = append(all, d)
		if f.keyframe {
			idr = append(idr, d)
		} else {
			p = append(p, d)
		}
		return len(all) < n
	})
	if err != nil {
		return err
	}
	sec := "4 glass-to-glass (SEI capture time → frame complete at Go viewer)"
	r.Add(Figure{ID: "glass.p50", Section: sec, Name: "capture → frame complete p50", Unit: "ms", Value: all.P(50), N: len(all)})
	r.Add(Figure{ID: "glass.p95", Section: sec, Name: "capture → frame complete p95", Unit: "ms", Value: all.P(95), Target: 40, N: len(all)})
	r.Add(Figure{ID: "glass.p99", Section: sec, Name: "capture → frame complete p99", Unit: "ms", Value: all.P(99), N: len(all)})
	r.Add(Figure{ID: "glass.p.p95", Section: sec, Name: "  P frames only p95", Unit: "ms", Value: p.P(95), N: len(p)})
	r.Add(Figure{ID: "glass.idr.p50", Section: sec, Name: "  IDR frames only p50", Unit: "ms", Value: idr.P(50), N: len(idr),
		Note: fmt.Sprintf("%d incomplete frames skipped", unclean)})
	return nil
}
