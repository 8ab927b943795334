package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// frame is one access unit as a subscriber received it.
type frame struct {
	ts       uint32    // RTP timestamp
	first    time.Time // first packet read
	done     time.Time // last (marker) packet read
	clean    bool      // every packet from its start arrived, in order
	keyframe bool
	au       []byte
}

// decodable: an IDR access unit received whole, so a decoder can start from it.
func (f *frame) decodable() bool { return f.clean && f.keyframe }

// auReader reassembles H.264 access units (packetization-mode 1) from RTP packets.
type auReader struct {
	depack  codecs.H264Packet
	cur     frame
	inAU    bool
	havePkt bool
	lastSeq uint16
	packets uint64
}

// startsNAL reports whether an H.264 RTP payload starts a NAL unit (not a FU-A continuation).
func startsNAL(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	if p[0]&0x1f == 28 { // FU-A: start bit
		return p[1]&0x80 != 0
	}
	return true
}

// push adds one packet read at now; it returns a frame when the packet ends one.
func (r *auReader) push(pkt *rtp.Packet, now time.Time) *frame {
	r.packets++
	gap := r.havePkt && pkt.SequenceNumber != r.lastSeq+1
	r.havePkt, r.lastSeq = true, pkt.SequenceNumber
	if !r.inAU || pkt.Timestamp != r.cur.ts {
		// a new access unit; a previous one without its marker packet is lost
		r.depack = codecs.H264Packet{}
		r.cur = frame{ts: pkt.Timestamp, first: now, clean: startsNAL(pkt.Payload) && !gap}
		r.inAU = true
	} else if gap {
		r.cur.clean = false
	}
	if payload, err := r.depack.Unmarshal(pkt.Payload); err == nil {
		r.cur.au = append(r.cur.au, payload...)
	} else {
		r.cur.clean = false
	}
	if !pkt.Marker {
		return nil
	}
	f := r.cur
	f.done = now
	f.keyframe = h264.IsKeyframe(f.au)
	r.inAU = false
	r.cur = frame{}
	return &f
}

// firstDecodable waits, 10 s at most, for the first frame a decoder can start from (a complete
// keyframe) and returns when it was complete.
func firstDecodable(ctx context.Context, track *webrtc.TrackRemote) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var done time.Time
	err := readFrames(ctx, track, func(f *frame) bool {
		if f.decodable() {
			done = f.done
			return false
		}
		return true
	})
	return done, err
}

// readFrames reads track until fn returns false, the track ends or ctx ends.
func readFrames(ctx context.Context, track *webrtc.TrackRemote, fn func(*frame) bool) error {
	var r auReader
	stop := context.AfterFunc(ctx, func() { track.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if f := r.push(pkt, time.Now()); f != nil && !fn(f) {
			return nil
		}
	}
}

// publisher publishes the synthetic camera as RTP it writes itself, so the send time of each
// frame's first packet is known (keyed by RTP timestamp, and by the SEI's frame counter for
// servers that rewrite timestamps). It is a Go user of the hub (startPublisher) or a WHIP
// client (startWHIPPublisher); closeConn ends its connection.
type publisher struct {
	closeConn func()
	track     *webrtc.TrackLocalStaticRTP
	cam       *synth.Camera
	cancel    context.CancelFunc
	done      chan struct{}

	mu      sync.Mutex
	sent    map[uint32]time.Time
	sentC   map[uint64]time.Time // by frame counter
	order   []uint32
	orderC  []uint64
	packets atomic.Uint64
	frames  atomic.Uint64
	// packets per frame, IDR and other, for the figures' notes
	idrFrames, idrPackets atomic.Uint64
	keyTS                 sync.Map // RTP timestamps of IDR frames
}

// isIDR reports whether the frame with RTP timestamp ts was an IDR.
func (p *publisher) isIDR(ts uint32) bool {
	_, ok := p.keyTS.Load(ts)
	return ok
}

const sentKept = 1024 // frames whose send time is remembered

// newPublisher makes the camera (width×height@30, 2 s GOP) and the track, and starts writing
// frames to the track (dropped until a connection is bound to it); the caller sets closeConn.
func newPublisher(width, height int) (*publisher, error) {
	cam, err := synth.NewCamera(synth.CameraOptions{Width: width, Height: height, FPS: 30})
	if err != nil {
		return nil, err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: rtc.H264FmtpConstrainedBaseline}, "video", "bench-publisher")
	if err != nil {
		cam.Close()
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.Background())
	p := &publisher{closeConn: func() {}, track: track, cam: cam, cancel: cancel, done: make(chan struct{}),
		sent: map[uint32]time.Time{}, sentC: map[uint64]time.Time{}}
	go p.run(pctx)
	return p, nil
}

// startPublisher joins channel as uid and publishes width×height@30 until stop.
func startPublisher(ctx context.Context, e *env, channel string, uid uint32, width, height int) (*publisher, error) {
	c, _, err := e.joinWithToken(ctx, channel, uid)
	if err != nil {
		return nil, err
	}
	// The hub announces a track when its media arrives, and Publish waits for that: the
	// frames flow (and are dropped until the connection is up) before Publish is called.
	p, err := newPublisher(width, height)
	if err != nil {
		c.Close()
		return nil, err
	}
	p.closeConn = func() { c.Close() }
	senders, err := c.Publish(ctx, p.track)
	if err != nil {
		p.stop()
		return nil, err
	}
	go p.answerKeyframeRequests(senders[0])
	return p, nil
}

// answerKeyframeRequests reads the sender's RTCP until it ends; a PLI or FIR makes the next
// frame an IDR.
func (p *publisher) answerKeyframeRequests(s *webrtc.RTPSender) {
	peer.DrainRTCP(s, peer.Feedback{Keyframe: p.cam.RequestKeyframe})
}

func (p *publisher) run(ctx context.Context) {
	defer close(p.done)
	var pay codecs.H264Payloader
	var seq uint16
	var ts uint32
	for {
		s, err := p.cam.ReadSample(ctx)
		if err != nil {
			return
		}
		payloads := pay.Payload(1200, s.Data)
		counter, _, hasCounter := h264.ParseFrameInfo(s.Data)
		now := time.Now()
		p.mu.Lock()
		p.sent[ts] = now
		p.order = append(p.order, ts)
		if len(p.order) > sentKept {
			delete(p.sent, p.order[0])
			p.order = p.order[1:]
		}
		if hasCounter {
			p.sentC[counter] = now
			p.orderC = append(p.orderC, counter)
			if len(p.orderC) > sentKept {
				delete(p.sentC, p.orderC[0])
				p.orderC = p.orderC[1:]
			}
		}
		p.mu.Unlock()
		for i, pl := range payloads {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: ts,
				SSRC: 0x62656e63, Marker: i == len(payloads)-1}, Payload: pl}
			seq++
			p.track.WriteRTP(pkt)
			p.packets.Add(1)
		}
		p.frames.Add(1)
		if s.Keyframe {
			p.idrFrames.Add(1)
			p.idrPackets.Add(uint64(len(payloads)))
			p.keyTS.Store(ts, true)
		}
		ts += 90000 / 30
	}
}

// sentAt is when the first packet of the frame with RTP timestamp ts was written.
func (p *publisher) sentAt(ts uint32) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.sent[ts]
	return t, ok
}

// sentAtCounter is when the first packet of the frame whose SEI carries counter was written.
func (p *publisher) sentAtCounter(counter uint64) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.sentC[counter]
	return t, ok
}

func (p *publisher) stop() {
	p.cancel()
	p.cam.Close()
	<-p.done
	p.closeConn()
}

// subscribeVideo subscribes c to uid's video and returns the track and when its first packet
// had arrived (pion announces a track once its first packet is read).
func subscribeVideo(ctx context.Context, c *rtc.Client, uid uint32) (*webrtc.TrackRemote, time.Time, error) {
	t, err := c.Subscribe(ctx, uid, rtc.KindVideo)
	return t, time.Now(), err
}

// drain reads a track until ctx ends (a viewer that plays nothing still must read).
func drain(ctx context.Context, t *webrtc.TrackRemote) {
	stop := context.AfterFunc(ctx, func() { t.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 1500)
	for {
		if _, _, err := t.Read(buf); err != nil {
			return
		}
	}
}

func rtpPacket(seq uint16, ts uint32, marker bool, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload}
}
