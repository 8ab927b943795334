package hub

// Relays between hubs (docs/scaling.md, "Relays"): three hubs share a directory in a real
// redis-server; a Go publisher sends synthetic H.264 (every packet carries its frame's number)
// to the channel's hub; with cluster.relayAbove 1 the second and third viewers are placed on
// the two other hubs, which relay the channel. Each viewer gets every frame from its first,
// which starts a keyframe; the publisher's send counters show one copy of its video.

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/cluster/clustertest"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	relayCert    = "relay-test-certificate-0123456789"
	relayChannel = "big"
	relayFrames  = 240 // 8 s at 30 fps, a keyframe each second
)

func startRelayHub(t *testing.T, redis, id string, above int) *Hub {
	t.Helper()
	return runTestHub(t, relayHubConfig(t, redis, id, above), 20*time.Second)
}

// relayHubConfig is a demo hub of the cluster with the shared test certificate.
func relayHubConfig(t *testing.T, redis, id string, above int) Config {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := Defaults()
	cfg.Demo = true
	cfg.Listen, cfg.MQTTListen = addr, "127.0.0.1:0"
	cfg.StateDir = filepath.Join(t.TempDir(), id)
	cfg.Apps = []App{{ID: "demo", Certificate: relayCert}}
	cfg.ICELoopbackOnly = "true"
	cfg.Cluster = Cluster{Redis: redis, HubID: id, PublicURL: "http://" + addr, RelayAbove: above}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// relayToken signs a publisher's token (video and audio) or a viewer's (audio: talk-back).
func relayToken(t *testing.T, uid uint32, publisher bool) string {
	t.Helper()
	privs := []string{token.PrivJoin, token.PrivSubscribe, token.PrivPublishAudio}
	if publisher {
		privs = append(privs, token.PrivPublishVideo)
	}
	tok, _, err := token.MintPrivileges("demo", relayCert, relayChannel, uid, privs, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// talker is the relayed viewer that talks back.
const talker = 202

// talk publishes synthetic Opus from c (20 ms packets, each carrying its number after two
// bytes) until stop is closed.
func talk(ctx context.Context, t *testing.T, c *rtc.Client, stop <-chan struct{}) {
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "talk")
	if err != nil {
		t.Error(err)
		return
	}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			payload := make([]byte, 60)
			payload[0] = 0xfc
			binary.BigEndian.PutUint32(payload[2:], uint32(n))
			audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(n), Timestamp: uint32(n * 960)}, Payload: payload})
		}
	}()
	if _, err := c.Publish(ctx, audio); err != nil {
		t.Errorf("viewer %d publish audio: %v", talker, err)
	}
}

// relayClients waits until every hub knows the others and returns the hubs' ids by
// signalling URL and the options of a client of a hub.
func relayClients(t *testing.T, hubs []*Hub) (map[string]string, func(*Hub) rtc.ClientOptions) {
	t.Helper()
	byURL := map[string]string{}
	for _, h := range hubs {
		byURL[rtc.HubWebSocketURL(h.URL())] = h.cfg.Cluster.HubID
	}
	time.Sleep(1500 * time.Millisecond) // every hub has read the others' registrations
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return byURL, func(hub *Hub) rtc.ClientOptions {
		return rtc.ClientOptions{URL: hub.URL(), API: api, Logger: slog.New(slog.DiscardHandler)}
	}
}

func newVideoTrack(t *testing.T) *webrtc.TrackLocalStaticRTP {
	t.Helper()
	video, err := rtctest.H264Track()
	if err != nil {
		t.Fatal(err)
	}
	return video
}

// sendFrames runs rtctest.SendH264; the channel closes after the last frame.
func sendFrames(t *testing.T, video *webrtc.TrackLocalStaticRTP, from, to int, written *atomic.Int64) <-chan struct{} {
	done := make(chan struct{})
	errc := rtctest.SendH264(video, from, to, written, nil)
	go func() {
		defer close(done)
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	return done
}

// relayViewer is one viewer's frames.
type relayViewer struct {
	name, hub string
	*rtctest.FrameLog
}

func TestRelayAcrossHubs(t *testing.T) {
	if testing.Short() {
		t.Skip("three hubs and a Redis for 8 s of video: not in -short")
	}
	redis := clustertest.StartRedis(t, "")
	hubs := []*Hub{startRelayHub(t, redis, "hub1", 1)}
	hubs = append(hubs, startRelayHub(t, redis, "hub2", 1), startRelayHub(t, redis, "hub3", 1))
	byURL, opts := relayClients(t, hubs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The publisher enters through hub1: the channel is placed there (no hub is loaded).
	const pubUID = 100
	pub, _, err := rtc.DialJoin(ctx, opts(hubs[0]), "demo", relayChannel, pubUID, relayToken(t, pubUID, true))
	if err != nil {
		t.Fatalf("publisher join: %v", err)
	}
	defer pub.Close()
	if got := byURL[pub.URL()]; got != "hub1" {
		t.Fatalf("the publisher is on %s, want hub1", got)
	}
	pubEvents := rtctest.LogEvents(pub)
	video := newVideoTrack(t)
	var written atomic.Int64 // RTP bytes written (header and payload)
	sent := sendFrames(t, video, 0, relayFrames, &written)

	if _, err = pub.Publish(ctx, video); err != nil { // returns once the hub receives media
		t.Fatalf("publish: %v", err)
	}
	before := written.Load() // written before the connection was up: never sent

	// Viewer 1 stays on hub1 (its first viewer); viewer 2 enters through hub3 and is sent to
	// hub1, which sends it to a relay (hub2); viewer 3 enters through hub1, sent to hub3.
	time.Sleep(500 * time.Millisecond)
	plan := []struct {
		uid   uint32
		entry *Hub
		want  string
	}{{201, hubs[0], "hub1"}, {202, hubs[2], "hub2"}, {203, hubs[0], "hub3"}}
	var viewers []*relayViewer
	var clients []*rtc.Client
	for _, p := range plan {
		c, res, err := rtc.DialJoin(ctx, opts(p.entry), "demo", relayChannel, p.uid, relayToken(t, p.uid, false))
		if err != nil {
			t.Fatalf("viewer %d join: %v", p.uid, err)
		}
		defer c.Close()
		clients = append(clients, c)
		v := &relayViewer{name: fmt.Sprint(p.uid), hub: byURL[c.URL()], FrameLog: rtctest.NewFrameLog()}
		if v.hub != p.want {
			t.Fatalf("viewer %d is on %s, want %s", p.uid, v.hub, p.want)
		}
		if !slices.ContainsFunc(res.Users, func(u rtc.User) bool { return u.UID == pubUID && u.Video }) {
			t.Fatalf("viewer %d on %s: the join reply lists %+v, not the publisher's video", p.uid, v.hub, res.Users)
		}
		tr, err := c.Subscribe(ctx, pubUID, rtc.KindVideo)
		if err != nil {
			t.Fatalf("viewer %d subscribe on %s: %v", p.uid, v.hub, err)
		}
		go v.Read(tr)
		viewers = append(viewers, v)
		if p.uid == talker {
			go talk(ctx, t, c, sent)
		}
		time.Sleep(300 * time.Millisecond) // the hubs' loads are refreshed between joins
	}
	// The relayed viewer's talk-back reaches the publisher on the origin.
	if _, err := pubEvents.Wait(ctx, "talk-back published", rtctest.Is(rtc.EventUserPublished, talker, rtc.KindAudio)); err != nil {
		t.Fatalf("the publisher never saw viewer %d's audio: %v", talker, err)
	}
	heard, err := pub.Subscribe(ctx, talker, rtc.KindAudio)
	if err != nil {
		t.Fatalf("the publisher's subscribe to the talk-back: %v", err)
	}
	ears := &relayViewer{name: "publisher", hub: "hub1", FrameLog: rtctest.NewFrameLog()}
	go ears.Read(heard)
	<-sent
	time.Sleep(time.Second)
	ears.Mu.Lock()
	from, to := 1<<30, -1
	for n := range ears.Arrived {
		from, to = min(from, n), max(to, n)
	}
	if to < 0 || len(ears.Arrived) < (to-from+1)*95/100 {
		t.Errorf("talk-back from viewer %d on hub2: %d packets of %d-%d reached the publisher", talker, len(ears.Arrived), from, to)
	}
	t.Logf("talk-back from viewer %d on hub2 to the publisher on hub1: packets %d-%d, %d received", talker, from, to, len(ears.Arrived))
	ears.Mu.Unlock()

	for _, v := range viewers {
		from, missing := v.Missing(0, relayFrames)
		if len(missing) > 0 || from >= relayFrames {
			t.Errorf("viewer %s (%s): frames %d-%d: %d missing: %v", v.name, v.hub, from, relayFrames-1, len(missing), missing)
		}
		v.Mu.Lock()
		if len(v.Starts) == 0 || v.Starts[0][0]&0x1f != 7 {
			t.Errorf("viewer %s (%s): the first packet (of %d subscriptions) is not the SPS of a keyframe", v.name, v.hub, len(v.Starts))
		}
		v.Mu.Unlock()
		t.Logf("viewer %s on %s: frames %d-%d, all %d received", v.name, v.hub, from, relayFrames-1, relayFrames-from)
	}
	// Added latency: a relayed viewer's arrival time of each frame minus the origin viewer's.
	for _, v := range viewers[1:] {
		var d []time.Duration
		for n, at := range v.Arrived {
			if o, ok := viewers[0].Arrived[n]; ok {
				d = append(d, at.Sub(o))
			}
		}
		slices.Sort(d)
		if len(d) > 0 {
			t.Logf("RELAY added latency via %s: p50 %s p95 %s (n=%d)", v.hub, d[len(d)/2], d[len(d)*95/100], len(d))
		}
	}

	// One copy of the video left the publisher, whatever the viewers and hubs: the bytes its
	// publish connection's ICE transport sent (SRTP, RTCP, DTLS, STUN) against the RTP bytes
	// written since the connection came up.
	var uplink uint64
	for _, s := range pub.PublishConnection().GetStats() {
		if ts, ok := s.(webrtc.TransportStats); ok && ts.ID == "iceTransport" {
			uplink = ts.BytesSent
		}
	}
	stream := written.Load() - before
	ratio := float64(uplink) / float64(stream)
	t.Logf("RELAY publisher uplink: %d bytes sent for %d bytes of RTP video (%.2f copies), viewers on 3 hubs", uplink, stream, ratio)
	if ratio < 0.9 || ratio > 1.3 {
		t.Errorf("the publisher sent %.2f copies of its video (%d bytes for %d), want one", ratio, uplink, stream)
	}
	for _, h := range hubs[1:] {
		if n := h.relays.Running(); n != 1 {
			t.Errorf("%s runs %d relays, want 1", h.cfg.Cluster.HubID, n)
		}
	}
	if n := hubs[0].relays.Running(); n != 0 {
		t.Errorf("hub1, the origin, runs %d relays", n)
	}

	// Once the relayed viewers leave, the relays close.
	for _, c := range clients[1:] {
		c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); hubs[1].relays.Running()+hubs[2].relays.Running() > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("relays still running 10 s after their viewers left: hub2 %d, hub3 %d", hubs[1].relays.Running(), hubs[2].relays.Running())
		}
	}
}
