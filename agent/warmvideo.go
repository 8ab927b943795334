package agent

import (
	"sync"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/pion/webrtc/v4/pkg/media"
)

// A session's publish connection comes up a few tens of milliseconds after the camera (opened
// at the join, or running on in a rejoin) has produced its frames, and what is written to the
// track before SRTP is up is dropped. So while a session connects, the call holds the
// camera's access units since its last keyframe instead of writing them, and hands them to the
// track the moment the connection is up: the hub gets a whole keyframe at once and starts the
// first viewers from it (hub/sfu warm start), instead of asking for one and waiting for the
// camera's next frame. Each frame reaches the track once, so nothing is sent twice. Only a
// recent keyframe is replayed (viewers would see an old picture otherwise); else the camera is
// asked for one. A hold that outlasts warmHold (a connection that never came up) ends, and
// frames go to the track as they come.
const (
	warmMaxAge    = 100 * time.Millisecond // as the hub's WarmStartAge
	warmMaxFrames = 8
	warmHold      = 2 * time.Second
)

// warmVideo is that hold: armed by a session's connect, spent when its publish connection is
// up. Its mutex orders the replay before the next live frame.
type warmVideo struct {
	mu      sync.Mutex
	armed   bool
	armedAt time.Time
	units   []media.Sample // copies: the camera may reuse its buffers
	keyAt   time.Time      // when units[0], a keyframe, was read
}

// arm starts holding (a session is connecting). A hold already running goes on with what it
// holds: a call arms before its camera's first frame (its keyframe), and again when it connects.
func (w *warmVideo) arm() {
	w.mu.Lock()
	if !w.armed || time.Since(w.armedAt) > warmHold {
		w.armed, w.armedAt, w.units = true, time.Now(), w.units[:0]
	}
	w.mu.Unlock()
}

// write writes s to the track, or holds a copy while armed.
func (w *warmVideo) write(s media.Sample, write func(media.Sample) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed && time.Since(w.armedAt) > warmHold {
		w.armed, w.units = false, w.units[:0]
	}
	if !w.armed {
		return write(s)
	}
	switch {
	case h264.IsKeyframe(s.Data):
		w.units = append(w.units[:0], copySample(s))
		w.keyAt = time.Now()
	case len(w.units) > 0 && len(w.units) < warmMaxFrames:
		w.units = append(w.units, copySample(s))
	default: // no keyframe yet, or a run too long to replay whole: wait for the next one
		w.units = w.units[:0]
	}
	return nil
}

// replay ends the hold and writes what was held if it starts with a recent keyframe; it
// reports whether it did.
func (w *warmVideo) replay(write func(media.Sample) error) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed {
		return false
	}
	w.armed = false
	units := w.units
	w.units = w.units[:0]
	if len(units) == 0 || time.Since(w.keyAt) > warmMaxAge {
		return false
	}
	for _, u := range units {
		if write(u) != nil {
			return false
		}
	}
	return true
}

func copySample(s media.Sample) media.Sample {
	s.Data = append([]byte(nil), s.Data...)
	return s
}
