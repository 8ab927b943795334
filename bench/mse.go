package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// The MSE alternative to the data-channel fallback (docs/sdk.md: why a data channel into
// WebCodecs): fragmented MP4 into Media Source Extensions, as go2rtc and Frigate serve browsers
// whose WebRTC lacks H.264. The project does not build it; to measure what that design costs,
// go2rtc (when the bench has it: BENCH_GO2RTC or tools/go2rtc.sh) pulls the in-process device's
// video from the hub over WHEP and serves it to its own MSE player (stream.html?mode=mse), and
// the same glass-to-glass script reads the capture-time strip from that player's <video>.
const mseChannel = "bench-mse"

var (
	chromiumMSE = chromiumPath{browser: "chromium", id: "glass.chromium.mse", via: "Chromium (MSE via go2rtc)", mse: true,
		section: "4 glass-to-glass to headless Chromium, fMP4 over Media Source Extensions (go2rtc's player; the alternative not built)"}
	firefoxMSE = chromiumPath{browser: "firefox", id: "glass.firefox.mse", via: "Firefox (MSE via go2rtc)", mse: true,
		section: "4 glass-to-glass to headless Firefox ESR, fMP4 over Media Source Extensions (go2rtc's player)"}
)

// startMSE has the device join mseChannel and go2rtc pull it; it returns the player page's URL
// and a stop, or why it cannot run ("" and nil when go2rtc is missing: why is then set).
func startMSE(ctx context.Context, repo string, s *inProcess) (page string, stop func(), why string, err error) {
	bins := findPeers(ctx, repo)
	if bins.go2rtc == "" {
		return "", nil, "go2rtc " + bins.go2rtcWhy, nil
	}
	cm, err := newCommander(s.broker, s.agentID)
	if err != nil {
		return "", nil, "", err
	}
	rep, err := cm.do(ctx, map[string]any{"action": "join", "channel": mseChannel})
	if err == nil && !rep.OK {
		err = errors.New(rep.Error)
	}
	if err != nil {
		cm.close()
		return "", nil, "", fmt.Errorf("device join %s: %w", mseChannel, err)
	}
	dir, err := os.MkdirTemp("", "cambench-mse-")
	if err != nil {
		cm.close()
		return "", nil, "", err
	}
	g, err := startGo2rtcWith(ctx, bins.go2rtc, dir, "webrtc:"+s.hubURL+"/whep/"+s.appID+"/"+mseChannel)
	if err != nil {
		cm.close()
		os.RemoveAll(dir)
		return "", nil, "", fmt.Errorf("go2rtc: %w", err)
	}
	stop = func() {
		g.stop()
		cm.do(context.Background(), map[string]any{"action": "leave"})
		cm.close()
		os.RemoveAll(dir)
	}
	return g.base + "/stream.html?src=" + peersChannel + "&mode=mse", stop, "", nil
}
