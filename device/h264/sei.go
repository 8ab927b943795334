package h264

import (
	"bytes"
	"encoding/binary"
	"time"
)

// FrameInfo travels inside every access unit as a user_data_unregistered SEI message,
// so a receiver can match a decoded picture to the frame that was sent.
type FrameInfo struct {
	Counter     uint64
	CaptureTime time.Time
}

// FrameInfoUUID identifies the SEI payload written by this package (a random UUID,
// fixed forever; ISO/IEC 11578 uuid_iso_iec_11578 in D.1.7).
var FrameInfoUUID = [16]byte{
	0x6c, 0x1f, 0x3e, 0x9a, 0x52, 0xd4, 0x4b, 0x07,
	0x9e, 0x38, 0xa1, 0x5c, 0x0b, 0xe6, 0x74, 0x2d,
}

const (
	seiUserDataUnregistered = 5
	frameInfoPayloadSize    = 16 + 8 + 8 // UUID, counter, capture time
)

// writeSEI writes sei_rbsp (7.3.2.3) with one user_data_unregistered message: the UUID,
// the counter (uint64 big-endian) and the capture time (Unix nanoseconds, int64
// big-endian).
func writeSEI(w *bitWriter, info FrameInfo) {
	var p [frameInfoPayloadSize]byte
	copy(p[:16], FrameInfoUUID[:])
	binary.BigEndian.PutUint64(p[16:], info.Counter)
	var ns int64
	if !info.CaptureTime.IsZero() {
		ns = info.CaptureTime.UnixNano()
	}
	binary.BigEndian.PutUint64(p[24:], uint64(ns))
	w.u(8, seiUserDataUnregistered) // payloadType (< 255: one byte)
	w.u(8, frameInfoPayloadSize)    // payloadSize
	w.bytes(p[:])
	w.trailing()
}

// ParseFrameInfo finds the FrameInfo SEI in an Annex-B access unit. ok is false when the
// access unit carries none. A zero capture time comes back as the zero time.Time.
func ParseFrameInfo(au []byte) (counter uint64, capture time.Time, ok bool) {
	var scratch [64]byte
	for _, nal := range SplitAnnexB(au) {
		if NALType(nal) != NALSEI {
			continue
		}
		rbsp := unescape(scratch[:0], nal[1:])
		if c, t, found := parseSEI(rbsp); found {
			return c, t, true
		}
	}
	return 0, time.Time{}, false
}

// parseSEI walks the sei_message()s of an SEI RBSP (7.3.2.3.1).
func parseSEI(rbsp []byte) (counter uint64, capture time.Time, ok bool) {
	for len(rbsp) > 1 { // a last byte alone is rbsp_trailing_bits
		typ, n := seiVarint(rbsp)
		if n == 0 {
			return 0, time.Time{}, false
		}
		rbsp = rbsp[n:]
		size, n := seiVarint(rbsp)
		rbsp = rbsp[n:]
		if n == 0 || size > len(rbsp) {
			return 0, time.Time{}, false
		}
		payload := rbsp[:size]
		rbsp = rbsp[size:]
		if typ != seiUserDataUnregistered || size < frameInfoPayloadSize ||
			!bytes.Equal(payload[:16], FrameInfoUUID[:]) {
			continue
		}
		counter = binary.BigEndian.Uint64(payload[16:])
		ns := int64(binary.BigEndian.Uint64(payload[24:]))
		if ns != 0 {
			capture = time.Unix(0, ns)
		}
		return counter, capture, true
	}
	return 0, time.Time{}, false
}

// seiVarint reads payloadType or payloadSize: a run of 0xFF bytes each adding 255, then
// a last byte. n is 0 when b ends first.
func seiVarint(b []byte) (v, n int) {
	for i, c := range b {
		v += int(c)
		if c != 0xff {
			return v, i + 1
		}
		if v > 1<<24 { // nonsense; stop before overflowing
			break
		}
	}
	return 0, 0
}
