// Command viewer is the NAT test's viewer: from inside its network namespace it asks the hub
// to have the device join a channel, joins it too (with the ICE servers the hub hands out),
// counts the device's video frames, talks back with a tone, and prints one JSON result line.
// It then holds the call until its standard input closes, so the test can check the device's
// speaker while the tone still plays. With -after-cut, a line on standard input first tells it
// that the test has just killed its media path: it then counts frames again, through whatever
// path the ICE restart found, and prints a second result line.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/webrtc/v4"
)

// Result is the one line the viewer prints.
type Result struct {
	Frames     int      `json:"frames"`
	ICEServers []string `json:"iceServers"`
	// Video and Audio are the selected local candidate types ("host", "srflx", "prflx",
	// "relay") of the subscribe (video in) and publish (audio out) connections.
	Video     string  `json:"video"`
	Audio     string  `json:"audio"`
	JoinMS    int64   `json:"joinMs"`
	FirstMS   int64   `json:"firstFrameMs"`
	TotalSecs float64 `json:"totalSeconds"`
	Error     string  `json:"error,omitempty"`
	// ICERestarts is how many ICE restarts the viewer made (the -after-cut line).
	ICERestarts uint64 `json:"iceRestarts"`
}

func main() {
	var (
		hub     = flag.String("hub", "", "hub base URL (https://…)")
		key     = flag.String("key", "", "bearer key of the hub's token service")
		dev     = flag.String("device", "", "device id")
		channel = flag.String("channel", "nat", "channel")
		frames  = flag.Int("frames", 30, "video frames to receive")
		verbose = flag.Bool("v", false, "log at debug level")
		iceTCP  = flag.Bool("ice-tcp", false, "also try ICE-TCP to the hub's TCP media port")
		cut     = flag.Int("after-cut", 0, "after the first result, wait for a line on stdin (the path was cut), then for this many more frames")
	)
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var res Result
	start := time.Now()
	var frameTimes chan time.Time
	if *cut > 0 {
		frameTimes = make(chan time.Time, 1024)
	}
	c, err := run(ctx, log, rtc.APIOptions{ICETCP: *iceTCP}, *hub, *key, *dev, *channel, *frames, &res, frameTimes)
	res.TotalSecs = time.Since(start).Seconds()
	if err != nil {
		res.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	in := bufio.NewReader(os.Stdin)
	if c != nil && *cut > 0 {
		json.NewEncoder(os.Stdout).Encode(afterCut(ctx, c, in, frameTimes, *cut))
	}
	if c != nil {
		// Hold the call (the tone keeps playing) until the test closes stdin.
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, in); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		// Leave, but do not wait on pion's close for long: it waits for relay gathering, and a
		// TURN/TCP connect that a firewall drops lasts until the kernel gives up (minutes).
		left := make(chan struct{})
		go func() { c.Leave(context.Background()); close(left) }()
		select {
		case <-left:
		case <-time.After(3 * time.Second):
			fmt.Fprintln(os.Stderr, "viewer: leave did not finish in 3 s")
		}
	}
	if err != nil {
		os.Exit(1)
	}
}

// afterCut waits for the test's line saying the media path was cut, then for want more frames.
func afterCut(ctx context.Context, c *rtc.Client, in *bufio.Reader, frames <-chan time.Time, want int) Result {
	var res Result
	if _, err := in.ReadString('\n'); err != nil {
		res.Error = "no cut line on stdin: " + err.Error()
		return res
	}
	cut := time.Now()
	for len(frames) > 0 { // what arrived before the cut
		<-frames
	}
	deadline := time.NewTimer(45 * time.Second)
	defer deadline.Stop()
	for res.Frames < want {
		select {
		case at := <-frames:
			if at.Before(cut) {
				continue
			}
			if res.Frames == 0 {
				res.FirstMS = at.Sub(cut).Milliseconds()
			}
			res.Frames++
		case <-deadline.C:
			res.Error = fmt.Sprintf("%d frames in 45 s after the cut", res.Frames)
			return res
		case <-ctx.Done():
			res.Error = "timed out"
			return res
		}
	}
	res.TotalSecs = time.Since(cut).Seconds()
	res.ICERestarts = c.ICERestarts()
	// Media may arrive (the hub resending what was lost, answering NACKs) a moment before this
	// side's ICE has settled on a pair: wait for both connections to name theirs.
	for settle := time.Now(); time.Since(settle) < 5*time.Second; time.Sleep(100 * time.Millisecond) {
		if pc := c.PublishConnection(); pc != nil {
			for _, s := range pc.GetSenders() {
				if s.Track() != nil {
					res.Audio = selected(s.Transport())
				}
			}
		}
		res.Video = selected(subscribeTransport(c))
		if res.Audio != "" && res.Video != "" {
			break
		}
	}
	return res
}

// run joins the device and the viewer to channel and waits for want video frames; later
// frames' arrival times go to frameTimes when it is not nil.
func run(ctx context.Context, log *slog.Logger, apiOpts rtc.APIOptions, hub, key, dev, channel string, want int, res *Result,
	frameTimes chan<- time.Time) (*rtc.Client, error) {
	api := &hubAPI{base: hub, key: key}
	if err := api.waitOnline(ctx, dev); err != nil {
		return nil, err
	}
	const devUID, myUID = 100, 200
	devTok, err := api.token(ctx, channel, devUID)
	if err != nil {
		return nil, err
	}
	if err := api.command(ctx, dev, map[string]any{"id": "join-" + channel, "action": "join",
		"channel": channel, "uid": devUID, "token": devTok, "appId": "demo"}); err != nil {
		return nil, fmt.Errorf("device join: %w", err)
	}
	myTok, err := api.token(ctx, channel, myUID)
	if err != nil {
		return nil, err
	}
	rapi, err := rtc.NewAPI(apiOpts)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	c, err := rtc.Dial(ctx, rtc.ClientOptions{URL: hub, API: rapi, Logger: log,
		RequestTimeout: 20 * time.Second}) // a loaded CI machine, relays over TCP
	if err != nil {
		return nil, err
	}
	jr, err := c.Join(ctx, "demo", channel, myUID, myTok)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("join: %w", err)
	}
	res.JoinMS = time.Since(t0).Milliseconds()
	for _, s := range jr.ICEServers {
		res.ICEServers = append(res.ICEServers, s.URLs...)
	}
	video, err := c.Subscribe(ctx, devUID, rtc.KindVideo)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("subscribe to the device's video: %w", err)
	}
	for res.Frames < want {
		video.SetReadDeadline(time.Now().Add(5 * time.Second))
		pkt, _, err := video.ReadRTP()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("video after %d frames: %w", res.Frames, err)
		}
		if pkt.Marker {
			if res.Frames == 0 {
				res.FirstMS = time.Since(t0).Milliseconds()
			}
			res.Frames++
		}
	}
	video.SetReadDeadline(time.Time{})
	go func() { // keep reading: the hub's forwarding must not block on us
		for {
			pkt, _, err := video.ReadRTP()
			if err != nil {
				return
			}
			if pkt.Marker && frameTimes != nil {
				select {
				case frameTimes <- time.Now():
				default:
				}
			}
		}
	}()
	sender, err := rtctest.PublishTone(ctx, c, 440)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("publish a tone: %w", err)
	}
	res.Audio = selected(sender.Transport())
	if sub := subscribeTransport(c); sub != nil {
		res.Video = selected(sub)
	}
	return c, nil
}

func subscribeTransport(c *rtc.Client) *webrtc.DTLSTransport {
	pc := c.SubscribeConnection()
	if pc == nil {
		return nil
	}
	for _, tr := range pc.GetTransceivers() {
		if t := tr.Receiver().Transport(); t != nil {
			return t
		}
	}
	return nil
}

func selected(t *webrtc.DTLSTransport) string {
	if t == nil {
		return ""
	}
	pair, err := t.ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local == nil {
		return ""
	}
	return pair.Local.Typ.String() + "/" + pair.Local.Protocol.String()
}

// hubAPI is the hub's HTTP API, as a backend with a bearer key uses it.
type hubAPI struct{ base, key string }

func (h *hubAPI) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

func (h *hubAPI) waitOnline(ctx context.Context, dev string) error {
	var last error
	for {
		var devs []struct{ ID, Status string }
		last = h.do(ctx, http.MethodGet, "/api/devices", nil, &devs)
		for _, d := range devs {
			if d.ID == dev && d.Status == "online" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("device %s never online (last error %v)", dev, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (h *hubAPI) token(ctx context.Context, channel string, uid uint32) (string, error) {
	var r struct{ Token string }
	err := h.do(ctx, http.MethodPost, "/api/token", map[string]any{"appId": "demo", "channel": channel,
		"uid": uid, "role": "publisher", "expireSeconds": 600}, &r)
	return r.Token, err
}

func (h *hubAPI) command(ctx context.Context, dev string, cmd map[string]any) error {
	var r struct {
		OK    bool
		Error string
	}
	if err := h.do(ctx, http.MethodPost, "/api/devices/"+dev+"/cmd", cmd, &r); err != nil {
		return err
	}
	if !r.OK {
		return errors.New(r.Error)
	}
	return nil
}
