package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// peerServer is one WHIP/WHEP server of the side-by-side run (section 8): camhub, go2rtc or
// MediaMTX, each its own process on loopback, fed and watched by the same clients.
type peerServer struct {
	name       string // "camhub", "go2rtc", "MediaMTX"
	id         string // figure ids: "camhub", "go2rtc", "mediamtx"
	whip, whep string // endpoint URLs
	pid        int
	stop       func()
	hub        *env   // camhub's, for its /metrics; nil for the peers
	base       string // http://host:port of its HTTP server
}

// peerBinaries says where the peers' programs are, or why one is not run.
type peerBinaries struct {
	go2rtc, mediamtx       string
	go2rtcWhy, mediamtxWhy string // set when the path is empty
}

// findPeers takes go2rtc from BENCH_GO2RTC or tools/go2rtc.sh (which builds it from the
// module proxy once) and MediaMTX from BENCH_MEDIAMTX (the proxy refuses its module: it is
// built by hand, docs/performance.md).
func findPeers(ctx context.Context, repo string) peerBinaries {
	var b peerBinaries
	if p := os.Getenv("BENCH_GO2RTC"); p != "" {
		b.go2rtc = p
	} else {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, "tools", "go2rtc.sh"))
		cmd.Dir = repo
		out, err := cmd.Output()
		if err != nil {
			b.go2rtcWhy = fmt.Sprintf("not run: tools/go2rtc.sh failed (%v); or set BENCH_GO2RTC", err)
		} else {
			b.go2rtc = strings.TrimSpace(string(out))
		}
	}
	if b.go2rtc != "" {
		if _, err := os.Stat(b.go2rtc); err != nil {
			b.go2rtc, b.go2rtcWhy = "", fmt.Sprintf("not run: %v", err)
		}
	}
	if p := os.Getenv("BENCH_MEDIAMTX"); p == "" {
		b.mediamtxWhy = "not run (set BENCH_MEDIAMTX)"
	} else if _, err := os.Stat(p); err != nil {
		b.mediamtxWhy = fmt.Sprintf("not run: BENCH_MEDIAMTX: %v", err)
	} else {
		b.mediamtx = p
	}
	return b
}

const peersChannel = "bench-peers"

// startCamhubPeer runs camhub (demo mode: loopback clients need no credential) and names its
// WHIP and WHEP routes for the channel.
func startCamhubPeer(ctx context.Context, bin, dir string, e env) (*peerServer, error) {
	h, err := startHubProcess(ctx, bin, dir, e)
	if err != nil {
		return nil, err
	}
	return &peerServer{name: "camhub", id: "camhub", whip: h.hubURL + "/whip/demo/" + peersChannel,
		whep: h.hubURL + "/whep/demo/" + peersChannel, pid: h.pid(), stop: h.stop, hub: &h.env}, nil
}

// startGo2rtc runs go2rtc with everything on loopback: no RTSP, SRTP or RTMP listener, no
// WebRTC listener (each connection its own UDP port on lo), no STUN server (its default is
// Google's), and one stream with no source that a WHIP publisher fills.
func startGo2rtc(ctx context.Context, bin, dir string) (*peerServer, error) {
	return startGo2rtcWith(ctx, bin, dir, "")
}

// startGo2rtcWith is startGo2rtc with the stream's source (empty: none, a WHIP publisher fills
// it; a WHEP URL: go2rtc pulls it when a viewer comes).
func startGo2rtcWith(ctx context.Context, bin, dir, source string) (*peerServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`log:
  level: warn
api:
  listen: %q
rtsp:
  listen: ""
srtp:
  listen: ""
rtmp:
  listen: ""
webrtc:
  listen: ""
  ice_servers: []
  filters:
    loopback: true
    interfaces: [lo]
    ips: [127.0.0.1]
    networks: [udp4]
streams:
  %s:%s
`, addr, peersChannel, quotedSource(source))
	c, err := startPeerProcess(ctx, bin, dir, "go2rtc", cfg, addr, func(path string) []string { return []string{"-config", path} })
	if err != nil {
		return nil, err
	}
	base := "http://" + addr + "/api/webrtc?"
	return &peerServer{name: "go2rtc", id: "go2rtc", whip: base + "dst=" + peersChannel, whep: base + "src=" + peersChannel,
		pid: c.pid(), stop: c.stop, base: "http://" + addr}, nil
}

// quotedSource is a go2rtc stream's source in YAML: nothing for none.
func quotedSource(src string) string {
	if src == "" {
		return ""
	}
	return " " + strconv.Quote(src)
}

// startMediaMTX runs MediaMTX with only its WebRTC server, on loopback: HTTP on one port, ICE
// on one UDP port of 127.0.0.1, no interface addresses, no STUN, and one path a publisher fills.
func startMediaMTX(ctx context.Context, bin, dir string) (*peerServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	udp, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`logLevel: warn
api: false
metrics: false
pprof: false
playback: false
rtsp: false
rtmp: false
hls: false
srt: false
moq: false
webrtc: true
webrtcAddress: %q
webrtcLocalUDPAddress: "127.0.0.1:%d"
webrtcLocalTCPAddress: ""
webrtcIPsFromInterfaces: false
webrtcAdditionalHosts: [127.0.0.1]
webrtcICEServers2: []
paths:
  %s:
    source: publisher
`, addr, udp, peersChannel)
	c, err := startPeerProcess(ctx, bin, dir, "mediamtx", cfg, addr, func(path string) []string { return []string{path} })
	if err != nil {
		return nil, err
	}
	base := "http://" + addr + "/" + peersChannel
	return &peerServer{name: "MediaMTX", id: "mediamtx", whip: base + "/whip", whep: base + "/whep", pid: c.pid(), stop: c.stop}, nil
}

// startPeerProcess writes the config into dir, starts bin with args(configPath) and waits
// until addr accepts HTTP.
func startPeerProcess(ctx context.Context, bin, dir, name, cfg, addr string, args func(string) []string) (*child, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	c, err := startChild(bin, filepath.Join(dir, name+".log"), args(path)...)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := awaitHTTP(ctx, c, name, "http://"+addr+"/", false); err != nil {
		return nil, err
	}
	return c, nil
}

// freeUDPPort returns a loopback UDP port nobody uses right now.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}
