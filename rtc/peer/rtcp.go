// rtcp.go: reading a sender's RTCP, which pion's interceptors need read, and reporting what
// the far end asks of the sender.

package peer

import (
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Feedback is what DrainRTCP reports; nil fields are not reported.
type Feedback struct {
	// Keyframe runs once per RTCP compound packet that asks for a keyframe (PLI or FIR).
	Keyframe func()
	// NACK runs with the sequence numbers a compound packet asks to be sent again.
	NACK func(seqs []uint16)
}

// DrainRTCP reads s's RTCP until its connection closes, reporting to fb. It blocks: run it on
// a goroutine its owner waits for.
func DrainRTCP(s *webrtc.RTPSender, fb Feedback) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if fb.Keyframe != nil && WantsKeyframe(pkts) {
			fb.Keyframe()
		}
		if fb.NACK != nil {
			if seqs := NACKedSeqs(pkts); len(seqs) > 0 {
				fb.NACK(seqs)
			}
		}
	}
}

// WantsKeyframe reports whether pkts ask for a keyframe (a PLI or a FIR).
func WantsKeyframe(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}

// NACKedSeqs returns the sequence numbers that pkts ask to be sent again.
func NACKedSeqs(pkts []rtcp.Packet) []uint16 {
	var seqs []uint16
	for _, p := range pkts {
		if n, ok := p.(*rtcp.TransportLayerNack); ok {
			for _, pair := range n.Nacks {
				seqs = append(seqs, pair.PacketList()...)
			}
		}
	}
	return seqs
}
