// Package whiptest is a WHIP and WHEP client for tests, written from RFC 9725 and the WHEP
// draft, not from the hub's code: plain pion PeerConnections and net/http. It makes its offer
// with every candidate gathered (no trickle), POSTs it as application/sdp with a bearer
// credential, expects 201 Created with the answer and a Location, and DELETEs the Location to
// end the session. Its media are the project's synthetic camera (H.264 with a frame counter)
// and Opus tones, so that a test can tell what it sees and hears.
package whiptest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/opus"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/camagent/camagent/rtc/rtctest"
	"github.com/pion/interceptor"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// API is an outside client's own pion setup: pion's default codecs and interceptors, ICE on
// loopback only.
func API() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var s webrtc.SettingEngine
	s.SetIncludeLoopbackCandidate(true)
	s.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	s.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(s)), nil
}

// Session is one WHIP or WHEP session as a client holds it.
type Session struct {
	PC       *webrtc.PeerConnection
	Location string // absolute URL of the resource
	Bearer   string
}

// HTTPError is a refused POST: its status and body.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// StatusOf is the HTTP status of a refused POST (0 for another error).
func StatusOf(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// Post sends pc's offer (after ICE gathering) to endpoint and applies the answer; the answer
// must come with a Location (RFC 9725 4.2).
func Post(ctx context.Context, pc *webrtc.PeerConnection, endpoint, bearer string) (*Session, error) {
	return post(ctx, pc, endpoint, bearer, true)
}

func post(ctx context.Context, pc *webrtc.PeerConnection, endpoint, bearer string, needLocation bool) (*Session, error) {
	offer, err := peer.Offer(ctx, pc, nil, peer.Gathering{})
	if err != nil {
		return nil, err
	}
	status, answer, loc, err := PostSDP(ctx, endpoint, bearer, "application/sdp", offer)
	if err != nil {
		return nil, err
	}
	if status != http.StatusCreated {
		return nil, &HTTPError{status, answer}
	}
	if loc == "" && needLocation {
		return nil, errors.New("201 without a Location")
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return nil, fmt.Errorf("apply answer: %w", err)
	}
	return &Session{PC: pc, Location: loc, Bearer: bearer}, nil
}

// PostSDP POSTs a body and returns the status, body and absolute Location.
func PostSDP(ctx context.Context, endpoint, bearer, contentType, body string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", contentType)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated && resp.Header.Get("Content-Type") != "application/sdp" {
		return 0, "", "", fmt.Errorf("answer has Content-Type %q", resp.Header.Get("Content-Type"))
	}
	loc := resp.Header.Get("Location")
	if loc != "" {
		base, _ := url.Parse(endpoint)
		if u, err := base.Parse(loc); err == nil {
			loc = u.String()
		}
	}
	return resp.StatusCode, string(b), loc, nil
}

// Delete sends DELETE to a resource's Location (bearer as given) and returns the status.
func Delete(location, bearer string) int {
	req, _ := http.NewRequest(http.MethodDelete, location, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Close ends the session with DELETE and closes the connection; it returns the status.
func (s *Session) Close() int {
	code := Delete(s.Location, s.Bearer)
	s.PC.Close()
	return code
}

// Publish publishes the synthetic camera (H.264 with its frame counter, a keyframe only when
// asked for after the first) and an Opus tone of toneHz until ctx ends or the session closes.
func Publish(ctx context.Context, api *webrtc.API, endpoint, bearer string, toneHz float64) (*Session, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	cam, err := synth.NewCamera(synth.CameraOptions{Width: 640, Height: 480, GOP: time.Hour})
	if err != nil {
		pc.Close()
		return nil, err
	}
	fail := func(err error) (*Session, error) {
		cam.Close()
		pc.Close()
		return nil, err
	}
	video, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "video", "whip")
	vs, err := pc.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fail(err)
	}
	at, err := rtctest.ToneTrack(ctx, toneHz, "whip")
	if err != nil {
		return fail(err)
	}
	as, err := pc.AddTransceiverFromTrack(at, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fail(err)
	}
	go func() {
		defer cam.Close()
		for {
			s, err := cam.ReadSample(ctx)
			if err != nil {
				return
			}
			video.WriteSample(media.Sample{Data: s.Data, Duration: s.Duration})
		}
	}()
	go peer.DrainRTCP(vs.Sender(), peer.Feedback{Keyframe: cam.RequestKeyframe}) // the hub's keyframe requests
	go peer.DrainRTCP(as.Sender(), peer.Feedback{})
	s, err := Post(ctx, pc, endpoint, bearer)
	if err != nil {
		return fail(err)
	}
	return s, nil
}

// Viewer is a WHEP client: recvonly video and audio m-lines, and optionally one sendrecv
// audio m-line carrying a talk tone.
type Viewer struct {
	*Session
	mu     sync.Mutex
	tracks []*webrtc.TrackRemote
	arrive chan *webrtc.TrackRemote
}

// View watches endpoint on videos video and audios audio m-lines; with talkHz, the first
// audio m-line is sendrecv and sends that tone.
func View(ctx context.Context, api *webrtc.API, endpoint, bearer string, videos, audios int, talkHz float64) (*Viewer, error) {
	return view(ctx, api, endpoint, bearer, videos, audios, talkHz, true)
}

// ViewNoLocation is View for a server whose 201 carries no Location (go2rtc 1.9's WHEP route):
// its session cannot be deleted, only closed.
func ViewNoLocation(ctx context.Context, api *webrtc.API, endpoint string, videos, audios int) (*Viewer, error) {
	return view(ctx, api, endpoint, "", videos, audios, 0, false)
}

func view(ctx context.Context, api *webrtc.API, endpoint, bearer string, videos, audios int, talkHz float64, needLocation bool) (*Viewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &Viewer{arrive: make(chan *webrtc.TrackRemote, 16)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.mu.Lock()
		v.tracks = append(v.tracks, tr)
		v.mu.Unlock()
		v.arrive <- tr
	})
	recv := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}
	for i := 0; i < videos; i++ {
		pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, recv)
	}
	if talkHz > 0 {
		talk, err := rtctest.ToneTrack(ctx, talkHz, "whep-talk")
		if err != nil {
			pc.Close()
			return nil, err
		}
		tr, err := pc.AddTransceiverFromTrack(talk, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			pc.Close()
			return nil, err
		}
		go peer.DrainRTCP(tr.Sender(), peer.Feedback{})
		audios--
	}
	for i := 0; i < audios; i++ {
		pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, recv)
	}
	s, err := post(ctx, pc, endpoint, bearer, needLocation)
	if err != nil {
		pc.Close()
		return nil, err
	}
	v.Session = s
	return v, nil
}

// Next returns the next track of kind to arrive.
func (v *Viewer) Next(ctx context.Context, kind webrtc.RTPCodecType) (*webrtc.TrackRemote, error) {
	for {
		select {
		case tr := <-v.arrive:
			if tr.Kind() == kind {
				return tr, nil
			}
			v.arrive <- tr // another kind: leave it for its reader
			time.Sleep(10 * time.Millisecond)
		case <-ctx.Done():
			return nil, fmt.Errorf("no %s track: %w", kind, ctx.Err())
		}
	}
}

// Frames reads H.264 access units from track until n have a frame counter; it returns the
// counters and whether the first complete access unit was an IDR.
func Frames(ctx context.Context, track *webrtc.TrackRemote, n int) (counters []uint64, firstIDR bool, err error) {
	first := true
	err = readAccessUnits(ctx, track, func(au []byte) bool {
		if first {
			first = false
			firstIDR = h264.IsKeyframe(au)
		}
		if c, _, ok := h264.ParseFrameInfo(au); ok {
			counters = append(counters, c)
		}
		return len(counters) >= n
	})
	return counters, firstIDR, err
}

// AccessUnits reads n H.264 access units from track (Annex-B), counted whether or not they
// carry a frame counter: some servers drop an access unit's leading SEI on the way (go2rtc
// keeps it only behind an SPS, so only IDRs keep their counters).
func AccessUnits(ctx context.Context, track *webrtc.TrackRemote, n int) ([][]byte, error) {
	var aus [][]byte
	err := readAccessUnits(ctx, track, func(au []byte) bool {
		aus = append(aus, au)
		return len(aus) >= n
	})
	return aus, err
}

// readAccessUnits hands each complete access unit of track to enough until it says so.
func readAccessUnits(ctx context.Context, track *webrtc.TrackRemote, enough func(au []byte) bool) error {
	sb := samplebuilder.New(512, &codecs.H264Packet{}, 90000)
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		track.SetReadDeadline(time.Now().Add(5 * time.Second))
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return fmt.Errorf("read video: %w", err)
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			if enough(s.Data) {
				return nil
			}
		}
	}
}

// ToneOf decodes about a second of Opus from track and returns its dominant frequency.
func ToneOf(ctx context.Context, track *webrtc.TrackRemote) (float64, error) {
	dec, err := opus.NewDecoder()
	if err != nil {
		return 0, err
	}
	var pcm []int16
	buf := make([]int16, 5760)
	for len(pcm) < device.SampleRate {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		track.SetReadDeadline(time.Now().Add(5 * time.Second))
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return 0, fmt.Errorf("read audio: %w", err)
		}
		if n, err := dec.Decode(pkt.Payload, buf); err == nil {
			pcm = append(pcm, buf[:n]...)
		}
	}
	return audio.DominantFrequency(pcm[len(pcm)/2:], device.SampleRate), nil
}
