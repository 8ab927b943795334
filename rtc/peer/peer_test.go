package peer_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/rtcp"
	"github.com/pion/transport/v5"
	pturn "github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

func newAPI(t *testing.T, n transport.Net) *webrtc.API {
	t.Helper()
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true, Net: n})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func newPC(t *testing.T, api *webrtc.API, cfg webrtc.Configuration) *webrtc.PeerConnection {
	t.Helper()
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// connect negotiates offerer → answerer with Offer and Answer (opts for the offer).
func connect(ctx context.Context, t *testing.T, offerer, answerer *webrtc.PeerConnection, opts *webrtc.OfferOptions) {
	t.Helper()
	if err := negotiate(ctx, offerer, answerer, opts); err != nil {
		t.Fatal(err)
	}
}

func negotiate(ctx context.Context, offerer, answerer *webrtc.PeerConnection, opts *webrtc.OfferOptions) error {
	g := peer.Gathering{Timeout: 5 * time.Second}
	offer, err := peer.Offer(ctx, offerer, opts, g)
	if err != nil {
		return err
	}
	if !strings.Contains(offer, "a=candidate:") {
		return errors.New("the offer carries no candidate: it was sent before gathering")
	}
	if err := answerer.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return err
	}
	answer, err := peer.Answer(ctx, answerer, g)
	if err != nil {
		return err
	}
	if !strings.Contains(answer, "a=candidate:") {
		return errors.New("the answer carries no candidate")
	}
	return offerer.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// videoPair is a sender of one VP8 track and its receiver, not yet negotiated.
func videoPair(t *testing.T, sendNet transport.Net) (send, recv *webrtc.PeerConnection, sender *webrtc.RTPSender, track *webrtc.TrackLocalStaticSample) {
	t.Helper()
	send = newPC(t, newAPI(t, sendNet), webrtc.Configuration{})
	recv = newPC(t, newAPI(t, nil), webrtc.Configuration{})
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "cam")
	if err != nil {
		t.Fatal(err)
	}
	if sender, err = send.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	return send, recv, sender, track
}

// TestDrainRTCPReportsFeedback: a PLI, a FIR and a NACK written by the receiving peer arrive
// at the sender's DrainRTCP as keyframe requests and the NACKed sequence numbers.
func TestDrainRTCPReportsFeedback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	send, recv, sender, _ := videoPair(t, nil)
	connected := make(chan struct{})
	peer.Watch(recv, peer.PathOptions{}, peer.PathEvents{Up: func(bool) {
		select {
		case <-connected:
		default:
			close(connected)
		}
	}})
	connect(ctx, t, send, recv, nil)
	var keyframes atomic.Int32
	nacks := make(chan []uint16, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		peer.DrainRTCP(sender, peer.Feedback{Keyframe: func() { keyframes.Add(1) }, NACK: func(s []uint16) { nacks <- s }})
	}()
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("the pair never connected")
	}
	ssrc := uint32(sender.GetParameters().Encodings[0].SSRC)
	write := func(p rtcp.Packet) {
		if err := recv.WriteRTCP([]rtcp.Packet{p}); err != nil {
			t.Fatal(err)
		}
	}
	write(&rtcp.PictureLossIndication{MediaSSRC: ssrc})
	write(&rtcp.FullIntraRequest{MediaSSRC: ssrc, FIR: []rtcp.FIREntry{{SSRC: ssrc, SequenceNumber: 1}}})
	write(&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 0b101}}})
	select {
	case seqs := <-nacks:
		if want := []uint16{100, 101, 103}; len(seqs) != 3 || seqs[0] != want[0] || seqs[1] != want[1] || seqs[2] != want[2] {
			t.Fatalf("NACKed %v, want %v", seqs, want)
		}
	case <-ctx.Done():
		t.Fatal("the NACK never arrived")
	}
	for keyframes.Load() < 2 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if n := keyframes.Load(); n != 2 {
		t.Fatalf("%d keyframe requests reported, want 2 (a PLI and a FIR)", n)
	}
	send.Close()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("DrainRTCP did not return when its connection closed")
	}
}

// TestPathWatchRestart: a sender whose sockets go silent (rtctest.CutNet) is disconnected, so
// the watcher calls Lost; while the path stays dead Lost is called again per Retry; an ICE
// restart made from Lost brings the path back, and Up reports it as a restored loss.
func TestPathWatchRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for ICE to notice a dead path: not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cut, err := rtctest.NewCutNet()
	if err != nil {
		t.Fatal(err)
	}
	send, recv, _, track := videoPair(t, cut)
	up := make(chan bool, 8)
	var lost []int
	restored := make(chan struct{})
	var restart atomic.Bool // Lost's second call restarts ICE
	w := peer.Watch(send, peer.PathOptions{
		After: 500 * time.Millisecond,
		Retry: func(int) time.Duration { return 300 * time.Millisecond },
	}, peer.PathEvents{
		Up: func(wasLost bool) {
			up <- wasLost
			if wasLost {
				close(restored)
			}
		},
		Lost: func(n int, lostAt time.Time) {
			lost = append(lost, n)
			if n == 2 && restart.CompareAndSwap(false, true) {
				if err := negotiate(ctx, send, recv, &webrtc.OfferOptions{ICERestart: true}); err != nil {
					t.Errorf("ICE restart: %v", err)
				}
			}
		},
	})
	defer w.Close()
	go func() { // media keeps flowing, so consent checks and the restart have traffic to carry
		for ctx.Err() == nil {
			track.WriteSample(mediaSample())
			time.Sleep(33 * time.Millisecond)
		}
	}()
	connect(ctx, t, send, recv, nil)
	select {
	case wasLost := <-up:
		if wasLost {
			t.Fatal("the first connection is reported as a restored loss")
		}
	case <-ctx.Done():
		t.Fatal("never connected")
	}
	if n := cut.Cut(); n == 0 {
		t.Fatal("nothing to cut")
	}
	select {
	case <-restored:
	case <-ctx.Done():
		t.Fatalf("the path never came back; state %s", send.ConnectionState())
	}
	w.Close()
	if len(lost) < 2 || lost[0] != 1 || lost[1] != 2 {
		t.Fatalf("Lost calls %v, want 1, 2 (a retry while the path stayed dead)", lost)
	}
}

// TestLostElsewhere: the far end's word makes a connected path lost at once; a retry finds
// the connection connected (no state change ever came) and reports it restored.
func TestLostElsewhere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	send, recv, _, _ := videoPair(t, nil)
	up := make(chan bool, 4)
	lost := make(chan int, 4)
	w := peer.Watch(send, peer.PathOptions{After: time.Second, Retry: func(int) time.Duration { return 50 * time.Millisecond }},
		peer.PathEvents{Up: func(wasLost bool) { up <- wasLost }, Lost: func(n int, _ time.Time) { lost <- n }})
	defer w.Close()
	connect(ctx, t, send, recv, nil)
	if wasLost := <-up; wasLost {
		t.Fatal("first connection reported as restored")
	}
	w.LostElsewhere()
	w.LostElsewhere() // once known, nothing more
	select {
	case n := <-lost:
		if n != 1 {
			t.Fatalf("first Lost call is restart %d", n)
		}
	case <-ctx.Done():
		t.Fatal("LostElsewhere called no Lost")
	}
	select {
	case wasLost := <-up:
		if !wasLost {
			t.Fatal("the restored path is not reported as a lost one")
		}
	case n := <-lost:
		t.Fatalf("Lost called again (%d) on a connected path", n)
	case <-ctx.Done():
		t.Fatal("never reported restored")
	}
}

// turnServer runs a TURN server on loopback; user "u" password "p".
func turnServer(t *testing.T) string {
	t.Helper()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key := pturn.GenerateAuthKey("u", "test", "p")
	srv, err := pturn.NewServer(pturn.ServerConfig{
		Realm:       "test",
		AuthHandler: func(ra *pturn.RequestAttributes) (string, []byte, bool) { return ra.Username, key, ra.Username == "u" },
		PacketConnConfigs: []pturn.PacketConnConfig{{PacketConn: udp,
			RelayAddressGenerator: &pturn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return "turn:" + udp.LocalAddr().String()
}

// deadTURN is a UDP port that swallows everything: a TURN server behind a firewall.
func deadTURN(t *testing.T) string {
	t.Helper()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			if _, _, err := udp.ReadFrom(b); err != nil {
				return
			}
		}
	}()
	return "turn:" + udp.LocalAddr().String()
}

// TestGatherRelayGrace: with one TURN server answering and one silent, gathering never
// completes (pion waits for the silent one for tens of seconds), yet Offer returns with the
// relay candidate once RelayGrace has passed; without RelayGrace it ends at Timeout with
// ErrGatherIncomplete and the candidates it has.
func TestGatherRelayGrace(t *testing.T) {
	live, dead := turnServer(t), deadTURN(t)
	cfg := webrtc.Configuration{ICEServers: []webrtc.ICEServer{
		{URLs: []string{live}, Username: "u", Credential: "p"},
		{URLs: []string{dead}, Username: "u", Credential: "p"},
	}}
	api := newAPI(t, nil)
	offerer := func() *webrtc.PeerConnection {
		pc := newPC(t, api, cfg)
		if _, err := pc.CreateDataChannel("x", nil); err != nil {
			t.Fatal(err)
		}
		return pc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sdp, err := peer.Offer(ctx, offerer(), nil, peer.Gathering{RelayGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("with a relay candidate in hand: %v", err)
	}
	if !strings.Contains(sdp, " typ relay") || !strings.Contains(sdp, " typ host") {
		t.Fatalf("the offer lacks the relay or host candidates:\n%s", sdp)
	}
	sdp, err = peer.Offer(ctx, offerer(), nil, peer.Gathering{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, peer.ErrGatherIncomplete) {
		t.Fatalf("gathering with a silent TURN server and no grace: err %v, want ErrGatherIncomplete", err)
	}
	if !strings.Contains(sdp, " typ host") {
		t.Fatal("an incomplete gathering returned no candidates")
	}
	if ctx.Err() != nil {
		t.Fatal("the test's deadline passed: RelayGrace did not end the wait")
	}
}

// mediaSample is one small VP8-ish frame (its content does not matter to ICE).
func mediaSample() media.Sample {
	return media.Sample{Data: make([]byte, 200), Duration: 33 * time.Millisecond}
}
