package encode

import (
	"bytes"

	"github.com/camagent/camagent/device/h264"
)

// Splitter cuts an Annex-B byte stream into access units (ITU-T H.264 7.4.1.2.3): a new
// unit begins at an access unit delimiter, SPS, PPS or SEI, or at a slice whose
// first_mb_in_slice is 0, when the unit being built already has a slice. A unit is
// complete when the next one begins, so the newest picture waits for the following
// one's first bytes (one frame of latency).
type Splitter struct {
	buf     []byte   // bytes not yet cut into NAL units
	cur     [][]byte // NAL units of the unit being built
	haveVCL bool
}

var startCode3 = []byte{0, 0, 1}

// Write adds bytes from the stream and returns the access units they completed, each in
// Annex-B form with 4-byte start codes.
func (s *Splitter) Write(p []byte) [][]byte {
	s.buf = append(s.buf, p...)
	var out [][]byte
	for {
		first := bytes.Index(s.buf, startCode3)
		if first < 0 {
			// Keep the last two bytes: they may begin a start code.
			if len(s.buf) > 2 {
				s.buf = append(s.buf[:0], s.buf[len(s.buf)-2:]...)
			}
			return out
		}
		next := bytes.Index(s.buf[first+3:], startCode3)
		if next < 0 {
			if first > 0 {
				s.buf = append(s.buf[:0], s.buf[first:]...)
			}
			return out
		}
		nal := bytes.TrimRight(s.buf[first+3:first+3+next], "\x00")
		if len(nal) > 0 {
			if au := s.add(append([]byte(nil), nal...)); au != nil {
				out = append(out, au)
			}
		}
		s.buf = s.buf[first+3+next:]
	}
}

// add appends a NAL unit and returns the access unit it closed, if any.
func (s *Splitter) add(nal []byte) []byte {
	t := h264.NALType(nal)
	vcl := t == 1 || t == 5
	begins := t == 9 || t == 7 || t == 8 || t == 6 || (vcl && len(nal) > 1 && nal[1]&0x80 != 0)
	var done []byte
	if begins && s.haveVCL {
		done = s.flush()
	}
	s.cur = append(s.cur, nal)
	if vcl {
		s.haveVCL = true
	}
	return done
}

func (s *Splitter) flush() []byte {
	var au []byte
	for _, n := range s.cur {
		au = append(append(au, 0, 0, 0, 1), n...)
	}
	s.cur, s.haveVCL = nil, false
	return au
}

// Flush ends the stream: it returns the last access unit, if any.
func (s *Splitter) Flush() []byte {
	if first := bytes.Index(s.buf, startCode3); first >= 0 {
		if nal := bytes.TrimRight(s.buf[first+3:], "\x00"); len(nal) > 0 {
			s.cur = append(s.cur, append([]byte(nil), nal...))
			if t := h264.NALType(nal); t == 1 || t == 5 {
				s.haveVCL = true
			}
		}
	}
	s.buf = s.buf[:0]
	if !s.haveVCL {
		s.cur = nil
		return nil
	}
	return s.flush()
}
