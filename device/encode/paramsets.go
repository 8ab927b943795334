package encode

import (
	"github.com/camagent/camagent/device/h264"
)

// NAL unit types this file looks at (ITU-T H.264 Table 7-1).
const (
	nalSlice = 1
	nalIDR   = 5
	nalSPS   = 7
	nalPPS   = 8
	nalAUD   = 9
)

var startCode = []byte{0, 0, 0, 1}

// ParamSets repairs an H.264 access-unit stream for WebRTC: it remembers the latest SPS
// and PPS and puts them in front of every IDR that lacks them, and it drops everything
// before the first IDR (a decoder can do nothing with it). The zero value is ready.
type ParamSets struct {
	sps, pps []byte // NAL units without start codes
	started  bool
}

// Filter returns the access unit to send (Annex-B, 4-byte start codes) and whether it is
// a keyframe; ok is false when the unit must be dropped. au is not retained.
func (p *ParamSets) Filter(au []byte) (out []byte, keyframe, ok bool) {
	nals := h264.SplitAnnexB(au)
	var idr, vcl bool
	for _, n := range nals {
		switch h264.NALType(n) {
		case nalSPS:
			p.sps = append(p.sps[:0], n...)
		case nalPPS:
			p.pps = append(p.pps[:0], n...)
		case nalIDR:
			idr, vcl = true, true
		case nalSlice:
			vcl = true
		}
	}
	if !vcl && !idr {
		return nil, false, false // parameter sets or SEI alone: kept for the next IDR
	}
	if !p.started && (!idr || p.sps == nil || p.pps == nil) {
		return nil, false, false
	}
	p.started = true
	out = make([]byte, 0, len(au)+len(p.sps)+len(p.pps)+8)
	for _, n := range nals {
		if idr && h264.NALType(n) == nalAUD {
			out = append(append(out, startCode...), n...) // a delimiter must lead
		}
	}
	if idr {
		out = append(append(out, startCode...), p.sps...)
		out = append(append(out, startCode...), p.pps...)
	}
	for _, n := range nals {
		if t := h264.NALType(n); idr && (t == nalSPS || t == nalPPS || t == nalAUD) {
			continue
		}
		out = append(append(out, startCode...), n...)
	}
	return out, idr, true
}
