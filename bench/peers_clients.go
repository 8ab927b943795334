package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/hub/whip/whiptest"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
)

// The side-by-side run's clients are plain pion (whiptest.API: pion's default codecs and
// interceptors, ICE on lo) and net/http, the same for every server: one WHIP publisher of the
// bench's own packetized synthetic camera and N WHEP viewers with one recvonly video m-line.

// viewersPerAddress: camhub admits 16 WHIP/WHEP sessions per client address, so the viewers'
// HTTP requests come from 127.0.0.2, 127.0.0.3, … (all loopback), 15 per address, for every
// server alike. ICE and media stay on 127.0.0.1.
const viewersPerAddress = 15

// loopbackClient is an HTTP client whose connections leave from 127.0.0.(2+group).
func loopbackClient(group int) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+group%250))}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2}}
}

// postOffer makes pc's offer with every candidate gathered, POSTs it as application/sdp,
// applies the 201's answer and returns the absolute Location ("" when the server gives none,
// as go2rtc's WHEP route does).
func postOffer(ctx context.Context, hc *http.Client, pc *webrtc.PeerConnection, endpoint string) (string, error) {
	offer, err := peer.Offer(ctx, pc, nil, peer.Gathering{})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(offer))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST %s: %s: %.200s", endpoint, resp.Status, body)
	}
	loc := resp.Header.Get("Location")
	if loc != "" {
		if base, err := url.Parse(endpoint); err == nil {
			if u, err := base.Parse(loc); err == nil {
				loc = u.String()
			}
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return "", fmt.Errorf("apply answer: %w", err)
	}
	return loc, nil
}

// endSession DELETEs a session's Location (when it has one) and closes its connection.
func endSession(hc *http.Client, pc *webrtc.PeerConnection, loc string) {
	if loc != "" {
		if req, err := http.NewRequest(http.MethodDelete, loc, nil); err == nil {
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	pc.Close()
}

// startWHIPPublisher publishes the synthetic camera (640×480@30, 2 s GOP, keyframes on request)
// to a WHIP endpoint.
func startWHIPPublisher(ctx context.Context, api *webrtc.API, endpoint string) (*publisher, error) {
	p, err := newPublisher(640, 480)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		p.stop()
		return nil, err
	}
	hc := loopbackClient(0)
	p.closeConn = func() { pc.Close() }
	tr, err := pc.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.stop()
		return nil, err
	}
	go p.answerKeyframeRequests(tr.Sender())
	loc, err := postOffer(ctx, hc, pc, endpoint)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("WHIP: %w", err)
	}
	p.closeConn = func() { endSession(hc, pc, loc) }
	return p, nil
}

// peerWatch is what the viewers of one server record: per-frame latency while recording, and
// every viewer's complete frames. Its readers end when their connections close.
type peerWatch struct {
	pub       *publisher
	recording atomic.Bool
	frames    atomic.Uint64 // complete frames read by all viewers
	readers   sync.WaitGroup
	mu        sync.Mutex
	lat       Durations
	unkeyed   atomic.Uint64 // complete frames without a known send time
}

type whepViewer struct {
	pc  *webrtc.PeerConnection
	hc  *http.Client
	loc string
}

// addViewer opens one WHEP session receiving video; its track's reader is owned by w.
func (w *peerWatch) addViewer(ctx context.Context, api *webrtc.API, hc *http.Client, endpoint string) (*whepViewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	got := make(chan struct{})
	var once sync.Once
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		w.readers.Add(1)
		once.Do(func() { close(got) })
		go w.read(tr)
	})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		pc.Close()
		return nil, err
	}
	loc, err := postOffer(ctx, hc, pc, endpoint)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("WHEP: %w", err)
	}
	v := &whepViewer{pc: pc, hc: hc, loc: loc}
	select {
	case <-got:
		return v, nil
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	endSession(hc, pc, loc)
	return nil, fmt.Errorf("WHEP: no video within 15 s of the answer")
}

// read reassembles the viewer's access units; a complete one's latency is from the publisher's
// write of its first packet (found by the SEI's frame counter, else the RTP timestamp) to the
// read of its last.
func (w *peerWatch) read(tr *webrtc.TrackRemote) {
	defer w.readers.Done()
	var r auReader
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		fr := r.push(pkt, now)
		if fr == nil || !fr.clean {
			continue
		}
		w.frames.Add(1)
		if !w.recording.Load() {
			continue
		}
		sent, ok := time.Time{}, false
		if c, _, has := h264.ParseFrameInfo(fr.au); has {
			sent, ok = w.pub.sentAtCounter(c)
		} else {
			sent, ok = w.pub.sentAt(fr.ts)
		}
		if !ok {
			w.unkeyed.Add(1)
			continue
		}
		w.mu.Lock()
		w.lat = append(w.lat, now.Sub(sent))
		w.mu.Unlock()
	}
}

// take returns the latencies recorded so far and starts afresh.
func (w *peerWatch) take() Durations {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.lat
	w.lat = nil
	return d
}

// addViewers opens WHEP sessions, four at a time, until there are n.
func (w *peerWatch) addViewers(ctx context.Context, api *webrtc.API, endpoint string, viewers *[]*whepViewer, clients []*http.Client, n int) error {
	var mu sync.Mutex
	var errs []error
	have := len(*viewers)
	inParallel(n-have, 4, func(i int) {
		v, err := w.addViewer(ctx, api, clients[(have+i)/viewersPerAddress], endpoint)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		} else {
			*viewers = append(*viewers, v)
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d failed, the first: %w", len(errs), n-have, errs[0])
	}
	return nil
}

// closeViewers ends every session (DELETE where there is a Location) and waits for the readers.
func (w *peerWatch) closeViewers(viewers []*whepViewer) {
	inParallel(len(viewers), 8, func(i int) { endSession(viewers[i].hc, viewers[i].pc, viewers[i].loc) })
	w.readers.Wait()
}

// viewerAPI is the viewers' and publisher's pion setup (an outside client's, not camagent's).
func viewerAPI() (*webrtc.API, error) { return whiptest.API() }
