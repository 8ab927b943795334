package agent

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// sendCounters is an interceptor that counts what the agent's
// PeerConnections send, per SSRC, and keeps the receiver reports the hub
// returns for those streams. pion's GetStats reports nothing about senders,
// so the stats event reads these counters instead.
type sendCounters struct {
	mu      sync.Mutex
	streams map[uint32]*streamCount
}

// streamCount is one outgoing RTP stream's counters.
type streamCount struct {
	packets, bytes, frames uint64 // frames: RTP packets with the marker bit (video)
	lost                   int64  // cumulative, from the latest receiver report
	fractionLost           float64
}

func newSendCounters() *sendCounters {
	return &sendCounters{streams: map[uint32]*streamCount{}}
}

// get returns a copy of the counters of ssrc.
func (s *sendCounters) get(ssrc uint32) (streamCount, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.streams[ssrc]
	if !ok {
		return streamCount{}, false
	}
	return *c, true
}

// NewInterceptor implements interceptor.Factory.
func (s *sendCounters) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &countInterceptor{s: s}, nil
}

type countInterceptor struct {
	interceptor.NoOp
	s *sendCounters
}

func (i *countInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	i.s.mu.Lock()
	c := &streamCount{}
	i.s.streams[info.SSRC] = c
	i.s.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		n, err := w.Write(h, payload, a)
		if err == nil {
			i.s.mu.Lock()
			c.packets++
			c.bytes += uint64(h.MarshalSize() + len(payload))
			if h.Marker {
				c.frames++
			}
			i.s.mu.Unlock()
		}
		return n, err
	})
}

func (i *countInterceptor) UnbindLocalStream(info *interceptor.StreamInfo) {
	i.s.mu.Lock()
	delete(i.s.streams, info.SSRC)
	i.s.mu.Unlock()
}

func (i *countInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		if a == nil {
			a = interceptor.Attributes{}
		}
		pkts, perr := a.GetRTCPPackets(b[:n])
		if perr != nil {
			return n, a, err
		}
		for _, p := range pkts {
			var reports []rtcp.ReceptionReport
			switch rr := p.(type) {
			case *rtcp.ReceiverReport:
				reports = rr.Reports
			case *rtcp.SenderReport:
				reports = rr.Reports
			}
			for _, rep := range reports {
				i.s.mu.Lock()
				if c, ok := i.s.streams[rep.SSRC]; ok {
					c.lost = int64(rep.TotalLost)
					c.fractionLost = float64(rep.FractionLost) / 256
				}
				i.s.mu.Unlock()
			}
		}
		return n, a, err
	})
}
