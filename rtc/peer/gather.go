// Package peer is the WebRTC core that both ends of the channel protocol share: the Go client
// (rtc.Client, the agent's and the test kits' peer connections) and the hub (hub/sfu). It
// sets local descriptions and waits for their ICE candidates (gather.go), watches a
// connection's media path and says when to restart ICE (path.go), and reads a sender's RTCP,
// reporting keyframe requests and NACKs (rtcp.go). Policy stays with the callers: what an
// incomplete gathering means, who restarts which connection, when a user is given up on.
package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// ErrGatherIncomplete is returned (wrapped) by SetLocal, Offer and Answer when gathering did
// not complete within Gathering.Timeout. The SDP returned with it holds the candidates
// gathered so far: a caller may go on with them (the Go client does) or give up (the hub).
var ErrGatherIncomplete = errors.New("ICE gathering incomplete")

// Gathering bounds the wait for a local description's ICE candidates.
type Gathering struct {
	// Timeout bounds the whole wait (0: until gathering completes or ctx ends).
	Timeout time.Duration
	// RelayGrace, when positive, ends the wait that long after the first relay candidate:
	// the path of last resort is in hand, and a TURN transport that a firewall silently
	// drops (UDP to 3478) takes pion about 25 s to give up on while the others are there in
	// milliseconds.
	RelayGrace time.Duration
	// Log (nil: slog.Default) gets a line when the wait ends early.
	Log *slog.Logger
}

// Offer creates an offer on pc, sets it as the local description and waits for its
// candidates as Gathering says. It returns the SDP to send.
func Offer(ctx context.Context, pc *webrtc.PeerConnection, opts *webrtc.OfferOptions, g Gathering) (string, error) {
	offer, err := pc.CreateOffer(opts)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	return SetLocal(ctx, pc, offer, g)
}

// Answer creates an answer to the remote offer already applied to pc, sets it and waits for
// its candidates. It returns the SDP to send.
func Answer(ctx context.Context, pc *webrtc.PeerConnection, g Gathering) (string, error) {
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	return SetLocal(ctx, pc, answer, g)
}

// SetLocal sets desc as pc's local description and waits, driven by pion's gathering events,
// until its candidates are gathered, RelayGrace after the first relay candidate, or Timeout.
// It returns the local description's SDP with the candidates it has. One negotiation runs on
// a connection at a time, so SetLocal owns pc's OnICECandidate handler while it runs.
func SetLocal(ctx context.Context, pc *webrtc.PeerConnection, desc webrtc.SessionDescription, g Gathering) (string, error) {
	log := g.Log
	if log == nil {
		log = slog.Default()
	}
	relay := make(chan struct{})
	var relayOnce sync.Once
	if g.RelayGrace > 0 {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c != nil && c.Typ == webrtc.ICECandidateTypeRelay {
				relayOnce.Do(func() { close(relay) })
			}
		})
		defer pc.OnICECandidate(nil)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("set local %s: %w", desc.Type, err)
	}
	var timeout <-chan time.Time
	if g.Timeout > 0 {
		t := time.NewTimer(g.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var grace <-chan time.Time
	sdp := func() string {
		if d := pc.LocalDescription(); d != nil {
			return d.SDP
		}
		return ""
	}
	for {
		select {
		case <-done:
			return sdp(), nil
		case <-relay:
			relay = nil
			t := time.NewTimer(g.RelayGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			log.Info("ICE gathering: going on with a relay candidate, not waiting for the rest", "after", g.RelayGrace)
			return sdp(), nil
		case <-timeout:
			return sdp(), fmt.Errorf("%w after %s", ErrGatherIncomplete, g.Timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
