package h264

// NAL unit types used by the encoder (H.264 Table 7-1).
const (
	NALSlice = 1 // coded slice of a non-IDR picture
	NALIDR   = 5 // coded slice of an IDR picture
	NALSEI   = 6
	NALSPS   = 7
	NALPPS   = 8
)

var startCode = [4]byte{0, 0, 0, 1}

// appendNAL appends a 4-byte start code, the one-byte NAL header and rbsp with
// emulation-prevention bytes inserted (H.264 7.4.1: inside a NAL unit, 0x000000..0x000003
// must not occur, so a 0x03 goes after every pair of zero bytes that precede a byte ≤ 3).
func appendNAL(dst []byte, refIdc, typ byte, rbsp []byte) []byte {
	dst = append(dst, startCode[:]...)
	dst = append(dst, refIdc<<5|typ)
	zeros := 0
	start := 0
	for i, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			dst = append(dst, rbsp[start:i]...)
			dst = append(dst, 3)
			start = i
			zeros = 0
		}
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return append(dst, rbsp[start:]...)
}

// unescape removes emulation-prevention bytes from a NAL unit payload, appending the
// RBSP to dst.
func unescape(dst, nal []byte) []byte {
	zeros := 0
	for _, b := range nal {
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
		dst = append(dst, b)
	}
	return dst
}

// SplitAnnexB splits an Annex-B byte stream at its 3- or 4-byte start codes and returns
// the NAL units (header byte first, start codes and trailing zero bytes removed). The
// returned slices alias b. Bytes before the first start code are ignored.
func SplitAnnexB(b []byte) [][]byte {
	var nals [][]byte
	begin := -1 // start of the current NAL unit, -1 before the first start code
	for i := 0; i+2 < len(b); {
		if b[i+2] > 1 {
			i += 3
			continue
		}
		if b[i] != 0 || b[i+1] != 0 || b[i+2] != 1 {
			i++
			continue
		}
		if begin >= 0 {
			nals = appendTrimmed(nals, b[begin:i])
		}
		i += 3
		begin = i
	}
	if begin >= 0 {
		nals = appendTrimmed(nals, b[begin:])
	}
	return nals
}

// appendTrimmed drops the zero bytes that belong to the next start code (or are
// trailing_zero_8bits) and skips empty units.
func appendTrimmed(nals [][]byte, nal []byte) [][]byte {
	for len(nal) > 0 && nal[len(nal)-1] == 0 {
		nal = nal[:len(nal)-1]
	}
	if len(nal) == 0 {
		return nals
	}
	return append(nals, nal)
}

// NALType returns the nal_unit_type of a NAL unit as returned by SplitAnnexB.
func NALType(nal []byte) byte {
	if len(nal) == 0 {
		return 0
	}
	return nal[0] & 0x1f
}

// IsKeyframe reports whether an Annex-B access unit contains an IDR slice. It scans the
// start codes in place (no allocation: the hub calls it per access unit).
func IsKeyframe(au []byte) bool {
	for i := 0; i+3 < len(au); i++ {
		if au[i] == 0 && au[i+1] == 0 && au[i+2] == 1 {
			if au[i+3]&0x1f == NALIDR {
				return true
			}
			i += 2
		}
	}
	return false
}
