package h264

import "math/bits"

// bitWriter accumulates an RBSP (raw byte sequence payload) most significant bit first.
// It appends to buf, which the encoder reuses between frames.
type bitWriter struct {
	buf  []byte
	acc  uint64 // pending bits, right-aligned
	nacc uint   // number of pending bits in acc (always < 8 between calls)
}

func (w *bitWriter) reset(buf []byte) {
	w.buf = buf[:0]
	w.acc = 0
	w.nacc = 0
}

// u writes the n (≤ 32) low bits of v.
func (w *bitWriter) u(n uint, v uint32) {
	if n == 0 {
		return
	}
	w.acc = w.acc<<n | uint64(v)&(1<<n-1)
	w.nacc += n
	for w.nacc >= 8 {
		w.nacc -= 8
		w.buf = append(w.buf, byte(w.acc>>w.nacc))
	}
	w.acc &= 1<<w.nacc - 1
}

// flag writes one bit.
func (w *bitWriter) flag(b bool) {
	if b {
		w.u(1, 1)
	} else {
		w.u(1, 0)
	}
}

// ue writes v as an unsigned Exp-Golomb code (H.264 9.1): len-1 zeros, then v+1 in len bits.
func (w *bitWriter) ue(v uint32) {
	x := uint64(v) + 1
	n := uint(bits.Len64(x))
	if n <= 16 {
		w.u(2*n-1, uint32(x))
		return
	}
	w.u(n-1, 0)
	w.u(n, uint32(x)) // n ≤ 33 only for v = 2^32-1; the spec limits ue(v) to 2^32-2
}

// se writes v as a signed Exp-Golomb code (H.264 9.1.1): k>0 → 2k-1, k≤0 → -2k.
func (w *bitWriter) se(v int32) {
	if v > 0 {
		w.ue(uint32(2*int64(v) - 1))
	} else {
		w.ue(uint32(-2 * int64(v)))
	}
}

func (w *bitWriter) aligned() bool { return w.nacc == 0 }

// alignZero pads with zero bits to the next byte boundary (pcm_alignment_zero_bit).
func (w *bitWriter) alignZero() {
	if w.nacc != 0 {
		w.u(8-w.nacc, 0)
	}
}

// bytes appends raw bytes; the writer must be byte-aligned.
func (w *bitWriter) bytes(p []byte) {
	if w.nacc != 0 {
		for _, b := range p {
			w.u(8, uint32(b))
		}
		return
	}
	w.buf = append(w.buf, p...)
}

// trailing writes rbsp_trailing_bits: a one bit, then zeros to the byte boundary.
func (w *bitWriter) trailing() {
	w.u(1, 1)
	w.alignZero()
}
