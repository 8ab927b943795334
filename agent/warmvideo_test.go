package agent

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"
)

var (
	idrAU = []byte{0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65, 2}
	pAU   = []byte{0, 0, 0, 1, 0x41, 3}
)

// TestWarmVideoReplay: while armed the frames since the last keyframe are held (copies, not
// written) and replayed once, in order, if the keyframe is recent; stale, absent, cut short by
// the bound or unarmed, nothing is replayed; unarmed or after warmHold, frames go straight on.
func TestWarmVideoReplay(t *testing.T) {
	var sent [][]byte
	track := func(s media.Sample) error { sent = append(sent, s.Data); return nil }
	var w warmVideo
	w.write(media.Sample{Data: pAU}, track) // not armed: written
	if len(sent) != 1 {
		t.Fatalf("unarmed: %d frames written, want 1", len(sent))
	}
	w.arm()
	buf := append([]byte(nil), pAU...)
	w.write(media.Sample{Data: buf}, track) // before any keyframe: not kept
	w.write(media.Sample{Data: idrAU}, track)
	w.write(media.Sample{Data: buf}, track)
	buf[5] = 9 // the camera reuses its buffer
	if len(sent) != 1 {
		t.Fatalf("armed: %d frames written, want them held", len(sent)-1)
	}
	sent = nil
	if !w.replay(track) {
		t.Fatal("a fresh keyframe was not replayed")
	}
	if len(sent) != 2 || sent[0][10] != 0x65 || sent[1][5] != 3 {
		t.Fatalf("replayed %x, want the keyframe then the P frame as read", sent)
	}
	if w.replay(track) {
		t.Fatal("replayed twice")
	}
	// Armed again while armed (a call arms before the camera's first frame, then at connect):
	// the keyframe already held stays.
	w.arm()
	w.write(media.Sample{Data: idrAU}, track)
	w.arm()
	sent = nil
	if !w.replay(track) || len(sent) != 1 {
		t.Fatalf("re-armed: replayed %d frames, want the keyframe held before", len(sent))
	}
	// Stale: the keyframe is older than warmMaxAge.
	w.arm()
	w.write(media.Sample{Data: idrAU}, track)
	w.keyAt = time.Now().Add(-2 * warmMaxAge)
	if w.replay(track) {
		t.Fatal("a stale keyframe was replayed")
	}
	// No keyframe while armed: nothing, the camera is asked instead.
	w.arm()
	w.write(media.Sample{Data: pAU}, track)
	if w.replay(track) {
		t.Fatal("replayed frames without a keyframe")
	}
	// Bounded: a run longer than warmMaxFrames after the keyframe is not replayed (it could
	// not be whole); the next keyframe starts a new one.
	w.arm()
	w.write(media.Sample{Data: idrAU}, track)
	for range warmMaxFrames {
		w.write(media.Sample{Data: pAU}, track)
	}
	if w.replay(track) {
		t.Fatal("replayed a run cut short by the bound")
	}
	// A hold past warmHold ends: frames are written again.
	w.arm()
	w.armedAt = time.Now().Add(-2 * warmHold)
	sent = nil
	w.write(media.Sample{Data: pAU}, track)
	if len(sent) != 1 || w.replay(track) {
		t.Fatalf("after warmHold: %d written, want 1 and nothing to replay", len(sent))
	}
}
