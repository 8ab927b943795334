package rtctest

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Synthetic H.264 whose every RTP payload carries its frame's number, so that a receiver can
// count frames (relay tests and make scale). It is not decodable video: the NAL unit headers
// (and first_mb_in_slice) are real, enough for the hub's keyframe gate; the rest is padding.

// H264GOP is how often the synthetic source sends a keyframe: once a second at 30 fps.
const H264GOP = 30

// H264Frame packetizes synthetic frame n: a keyframe (SPS, PPS, three IDR slices) every
// H264GOP frames, else one P slice; every payload carries n (big-endian) after two bytes.
func H264Frame(n int) [][]byte {
	nal := func(header, second byte, size int) []byte {
		p := make([]byte, size)
		p[0], p[1] = header, second
		binary.BigEndian.PutUint32(p[2:], uint32(n))
		return p
	}
	if n%H264GOP != 0 {
		return [][]byte{nal(0x41, 0x80, 1000)}
	}
	// first_mb_in_slice is 0 (bit 1) for the first IDR slice only.
	return [][]byte{nal(0x67, 0x42, 12), nal(0x68, 0xce, 8), nal(0x65, 0x80, 1100), nal(0x65, 0x40, 1100), nal(0x65, 0x40, 1100)}
}

// H264Track is a local track for the synthetic source (payload type 102, the hub's H.264).
func H264Track() (*webrtc.TrackLocalStaticRTP, error) {
	return webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "video", "synthetic")
}

// SendH264 writes synthetic frames from to to-1 to video at 30 fps, adding the RTP bytes
// (12-byte header and payload) to written, or until stop is closed (nil: never). The
// channel gets nil after the last frame, or the write error that stopped it.
func SendH264(video *webrtc.TrackLocalStaticRTP, from, to int, written *atomic.Int64, stop <-chan struct{}) <-chan error {
	sent := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		seq := uint16(from * 7)
		for n := from; n < to; n++ {
			select {
			case <-tick.C:
			case <-stop:
				sent <- nil
				return
			}
			pkts := H264Frame(n)
			for i, payload := range pkts {
				seq++
				p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: uint32(n * 3000),
					Marker: i == len(pkts)-1}, Payload: payload}
				if err := video.WriteRTP(p); err != nil {
					sent <- fmt.Errorf("write frame %d: %w", n, err)
					return
				}
				written.Add(int64(12 + len(payload)))
			}
		}
		sent <- nil
	}()
	return sent
}

// FrameLog records, for each frame number of a synthetic stream (or talk-back packet
// number), when its first packet arrived, and the first packet of each subscription.
type FrameLog struct {
	Mu      sync.Mutex
	Starts  [][]byte // the first payload of each Read
	Arrived map[int]time.Time
}

// NewFrameLog returns an empty log.
func NewFrameLog() *FrameLog { return &FrameLog{Arrived: map[int]time.Time{}} }

// Read records tr's packets until it ends.
func (l *FrameLog) Read(tr *webrtc.TrackRemote) {
	for fresh := true; ; fresh = false {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(p.Payload) < 6 {
			continue
		}
		n := int(binary.BigEndian.Uint32(p.Payload[2:]))
		l.Mu.Lock()
		if fresh {
			l.Starts = append(l.Starts, append([]byte(nil), p.Payload...))
		}
		if _, ok := l.Arrived[n]; !ok {
			l.Arrived[n] = time.Now()
		}
		l.Mu.Unlock()
	}
}

// Missing returns the first frame number at or above from that arrived, and the numbers
// from there to to-1 that did not (first is to when none arrived).
func (l *FrameLog) Missing(from, to int) (first int, missing []int) {
	l.Mu.Lock()
	defer l.Mu.Unlock()
	first = to
	for n := range l.Arrived {
		if n >= from && n < first {
			first = n
		}
	}
	for n := first; n < to; n++ {
		if _, ok := l.Arrived[n]; !ok {
			missing = append(missing, n)
		}
	}
	return first, missing
}
