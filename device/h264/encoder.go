package h264

import (
	"bytes"
	"errors"
	"fmt"
)

// Frame is a picture in 8-bit 4:2:0 YUV (I420): Y has stride Width, Cb and Cr have
// stride Width/2 and Height/2 rows. Width and Height are even.
type Frame struct {
	Width, Height int
	Y, Cb, Cr     []byte
}

// NewFrame allocates a frame filled with mid-gray (Y = Cb = Cr = 128).
func NewFrame(width, height int) *Frame {
	cw, ch := width/2, height/2
	buf := make([]byte, width*height+2*cw*ch)
	for i := range buf {
		buf[i] = 128
	}
	return &Frame{
		Width: width, Height: height,
		Y:  buf[: width*height : width*height],
		Cb: buf[width*height : width*height+cw*ch : width*height+cw*ch],
		Cr: buf[width*height+cw*ch:],
	}
}

// ErrFrameSize is returned by Encode for a frame whose size differs from the encoder's.
var ErrFrameSize = errors.New("h264: frame size does not match encoder")

// Macroblock types as coded in mb_type of an I slice (Table 7-11); a P slice adds
// pSliceIntraOffset (Table 7-13).
const (
	mbI16x16DC        = 3 // I_16x16_2_0_0: DC prediction, only the luma DC block coded
	mbIPCM            = 25
	pSliceIntraOffset = 5
	sliceTypeP        = 5 // P, and every slice of the picture is P
	sliceTypeI        = 7 // I, and every slice of the picture is I

	// sliceQP is the QP of every macroblock. At QP 28 a lone Intra16x16DCLevel
	// coefficient L dequantizes (8.5.10, LevelScale4x4(4,0,0) = 256, shift 4) to a DC of
	// 64·L in each 4x4 block, which the inverse transform (8.5.12) turns into a residual
	// of exactly L on every luma sample: a flat macroblock is coded exactly with one
	// coefficient whatever its prediction.
	sliceQP = 28
)

// Encoder turns frames into a lossless Constrained Baseline H.264 stream. It is not safe
// for concurrent use.
type Encoder struct {
	width, height, fps int
	mbW, mbH           int
	levelIdc           byte
	idrInterval        int

	// Padded planes (a multiple of 16 luma samples each way): cur is the picture being
	// coded, ref the previous one, which equals the decoder's reference because every
	// macroblock is reconstructed exactly.
	cur, ref planes
	hasRef   bool

	frameNum uint32 // frame_num of the last coded picture
	idrPicID uint32
	sinceIDR int     // pictures coded since the last IDR
	nnz      []uint8 // per macroblock of cur: total_coeff seen by neighbours (9.2.1)
	changed  []bool  // per macroblock: cur differs from ref

	w    bitWriter
	rbsp []byte
	out  []byte
}

type planes struct {
	y, cb, cr []byte
	strideY   int
	strideC   int
}

func newPlanes(mbW, mbH int) planes {
	sy, sc := mbW*16, mbW*8
	return planes{
		y:       make([]byte, sy*mbH*16),
		cb:      make([]byte, sc*mbH*8),
		cr:      make([]byte, sc*mbH*8),
		strideY: sy,
		strideC: sc,
	}
}

// NewEncoder returns an encoder for width×height frames (both even and positive) at
// fps frames per second. The IDR interval defaults to two seconds of frames.
func NewEncoder(width, height, fps int) (*Encoder, error) {
	if width <= 0 || height <= 0 || width%2 != 0 || height%2 != 0 {
		return nil, fmt.Errorf("h264: frame size %dx%d: must be positive and even", width, height)
	}
	if fps <= 0 || fps > 1000 {
		return nil, fmt.Errorf("h264: frame rate %d out of range", fps)
	}
	mbW, mbH := (width+15)/16, (height+15)/16
	lvl, err := chooseLevel(mbW, mbH, fps)
	if err != nil {
		return nil, err
	}
	e := &Encoder{
		width: width, height: height, fps: fps,
		mbW: mbW, mbH: mbH,
		levelIdc:    lvl,
		idrInterval: 2 * fps,
		cur:         newPlanes(mbW, mbH),
		ref:         newPlanes(mbW, mbH),
		nnz:         make([]uint8, mbW*mbH),
		changed:     make([]bool, mbW*mbH),
	}
	// Worst case: every macroblock I_PCM (mb_type, alignment, 384 samples) plus headers.
	e.rbsp = make([]byte, 0, mbW*mbH*(384+3)+64)
	return e, nil
}

// SetIDRInterval sets how many pictures an IDR period holds; n ≤ 0 means IDRs only for
// the first picture and when forced.
func (e *Encoder) SetIDRInterval(n int) { e.idrInterval = n }

// ProfileLevelID is the SDP profile-level-id of the stream, e.g. "42c01e".
func (e *Encoder) ProfileLevelID() string {
	return fmt.Sprintf("%02x%02x%02x", profileBaseline, constraintFlags, e.levelIdc)
}

// Encode codes one frame and returns a newly allocated Annex-B access unit (4-byte start
// codes). An IDR access unit holds SPS, PPS, SEI and the slice; any other holds SEI and
// the slice. An IDR is coded for the first frame, when forceIDR is set, and when the IDR
// interval has passed.
func (e *Encoder) Encode(f *Frame, forceIDR bool, info FrameInfo) ([]byte, error) {
	out, err := e.AppendEncode(e.out[:0], f, forceIDR, info)
	if err != nil {
		return nil, err
	}
	e.out = out
	return append([]byte(nil), out...), nil
}

// AppendEncode is Encode appending to dst instead of allocating.
func (e *Encoder) AppendEncode(dst []byte, f *Frame, forceIDR bool, info FrameInfo) ([]byte, error) {
	if f.Width != e.width || f.Height != e.height {
		return dst, fmt.Errorf("%w: got %dx%d, want %dx%d", ErrFrameSize, f.Width, f.Height, e.width, e.height)
	}
	cw, ch := e.width/2, e.height/2
	if len(f.Y) < e.width*e.height || len(f.Cb) < cw*ch || len(f.Cr) < cw*ch {
		return dst, fmt.Errorf("%w: planes too short", ErrFrameSize)
	}
	pad(e.cur.y, e.cur.strideY, e.mbH*16, f.Y, e.width, e.height)
	pad(e.cur.cb, e.cur.strideC, e.mbH*8, f.Cb, cw, ch)
	pad(e.cur.cr, e.cur.strideC, e.mbH*8, f.Cr, cw, ch)

	idr := !e.hasRef || forceIDR || (e.idrInterval > 0 && e.sinceIDR >= e.idrInterval)
	if idr {
		if e.hasRef {
			e.idrPicID ^= 1 // consecutive IDR pictures differ in idr_pic_id (7.4.3)
		}
		e.frameNum = 0
		e.sinceIDR = 0
		e.w.reset(e.rbsp)
		e.writeSPS(&e.w)
		dst = appendNAL(dst, 3, NALSPS, e.w.buf)
		e.w.reset(e.w.buf)
		writePPS(&e.w)
		dst = appendNAL(dst, 3, NALPPS, e.w.buf)
	} else {
		e.frameNum = (e.frameNum + 1) % maxFrameNum
	}
	e.w.reset(e.w.buf)
	writeSEI(&e.w, info)
	dst = appendNAL(dst, 0, NALSEI, e.w.buf)

	e.w.reset(e.w.buf)
	e.writeSlice(&e.w, idr)
	if idr {
		dst = appendNAL(dst, 3, NALIDR, e.w.buf)
	} else {
		dst = appendNAL(dst, 2, NALSlice, e.w.buf)
	}
	e.rbsp = e.w.buf
	e.sinceIDR++
	e.cur, e.ref = e.ref, e.cur
	e.hasRef = true
	return dst, nil
}

// pad copies a w×h plane into a stride×rows buffer, replicating the right column and the
// bottom row into the padding.
func pad(dst []byte, stride, rows int, src []byte, w, h int) {
	for y := 0; y < h; y++ {
		row := dst[y*stride : (y+1)*stride]
		copy(row, src[y*w:(y+1)*w])
		last := row[w-1]
		for x := w; x < stride; x++ {
			row[x] = last
		}
	}
	lastRow := dst[(h-1)*stride : h*stride]
	for y := h; y < rows; y++ {
		copy(dst[y*stride:(y+1)*stride], lastRow)
	}
}

// writeSlice writes slice_layer_without_partitioning_rbsp (7.3.2.8): header and data.
func (e *Encoder) writeSlice(w *bitWriter, idr bool) {
	w.ue(0) // first_mb_in_slice
	if idr {
		w.ue(sliceTypeI)
	} else {
		w.ue(sliceTypeP)
	}
	w.ue(0) // pic_parameter_set_id
	w.u(log2MaxFrameNum, e.frameNum)
	if idr {
		w.ue(e.idrPicID)
		w.flag(false) // no_output_of_prior_pics_flag
		w.flag(false) // long_term_reference_flag
	} else {
		w.flag(false) // num_ref_idx_active_override_flag
		w.flag(false) // ref_pic_list_modification_flag_l0
		w.flag(false) // adaptive_ref_pic_marking_mode_flag: sliding window
	}
	w.se(sliceQP - 26) // slice_qp_delta from pic_init_qp 26
	w.ue(1)            // disable_deblocking_filter_idc: off, so reconstruction stays exact

	intraOffset := uint32(0)
	if !idr {
		intraOffset = pSliceIntraOffset
		e.markChanged()
	}
	skipRun := uint32(0)
	for mby := 0; mby < e.mbH; mby++ {
		for mbx := 0; mbx < e.mbW; mbx++ {
			i := mby*e.mbW + mbx
			if !idr && !e.changed[i] {
				// P_Skip: its predicted motion vector is zero because every macroblock
				// is intra or a zero-vector skip (8.4.1.1), so it copies ref exactly.
				skipRun++
				e.nnz[i] = 0
				continue
			}
			if !idr {
				w.ue(skipRun)
				skipRun = 0
			}
			if level, ok := e.flatDCLevel(mbx, mby); ok {
				w.ue(mbI16x16DC + intraOffset)
				w.ue(0) // intra_chroma_pred_mode: DC
				w.se(0) // mb_qp_delta
				writeLumaDC(w, e.nC(mbx, mby), level)
				e.nnz[i] = 0 // the AC blocks, which neighbours look at, are empty
				continue
			}
			w.ue(mbIPCM + intraOffset)
			w.alignZero() // pcm_alignment_zero_bit
			e.writePCM(w, mbx, mby)
			e.nnz[i] = 16 // an I_PCM neighbour counts as 16 coefficients (9.2.1)
		}
	}
	if skipRun > 0 {
		w.ue(skipRun)
	}
	w.trailing()
}

func (e *Encoder) writePCM(w *bitWriter, mbx, mby int) {
	p := &e.cur
	for y := 0; y < 16; y++ {
		o := (mby*16+y)*p.strideY + mbx*16
		w.bytes(p.y[o : o+16])
	}
	for _, c := range [2][]byte{p.cb, p.cr} {
		for y := 0; y < 8; y++ {
			o := (mby*8+y)*p.strideC + mbx*8
			w.bytes(c[o : o+8])
		}
	}
}

// markChanged sets changed for each macroblock of cur that differs from ref. Whole lines
// are compared first: in a mostly static picture most are equal.
func (e *Encoder) markChanged() {
	clear(e.changed)
	mark := func(cur, ref []byte, stride, mbSize int) {
		for y := 0; y*stride < len(cur); y++ {
			c, r := cur[y*stride:(y+1)*stride], ref[y*stride:(y+1)*stride]
			if bytes.Equal(c, r) {
				continue
			}
			row := e.changed[y/mbSize*e.mbW : (y/mbSize+1)*e.mbW]
			for mbx := range row {
				o := mbx * mbSize
				if !row[mbx] && !bytes.Equal(c[o:o+mbSize], r[o:o+mbSize]) {
					row[mbx] = true
				}
			}
		}
	}
	mark(e.cur.y, e.ref.y, e.cur.strideY, 16)
	mark(e.cur.cb, e.ref.cb, e.cur.strideC, 8)
	mark(e.cur.cr, e.ref.cr, e.cur.strideC, 8)
}

// nC is the coeff_token table selector for the Intra16x16DCLevel block of a macroblock:
// the total_coeff of luma block 0's left and upper neighbours (9.2.1), which lie in the
// left and upper macroblocks. The whole picture is one slice, so a neighbour inside the
// picture is available.
func (e *Encoder) nC(mbx, mby int) int {
	i := mby*e.mbW + mbx
	switch {
	case mbx > 0 && mby > 0:
		return (int(e.nnz[i-1]) + int(e.nnz[i-e.mbW]) + 1) >> 1
	case mbx > 0:
		return int(e.nnz[i-1])
	case mby > 0:
		return int(e.nnz[i-e.mbW])
	}
	return 0
}

// writeLumaDC writes residual_block_cavlc (7.3.5.3.2) for an Intra16x16DCLevel block
// whose only nonzero coefficient, if any, is level at scan position 0.
func writeLumaDC(w *bitWriter, nC, level int) {
	if level == 0 {
		writeCoeffToken(w, nC, 0, 0)
		return
	}
	if level == 1 || level == -1 {
		writeCoeffToken(w, nC, 1, 1)
		w.flag(level < 0) // trailing_ones_sign_flag
	} else {
		writeCoeffToken(w, nC, 1, 0)
		// level_prefix and level_suffix with suffixLength 0 (9.2.2.1). The decoder adds
		// 2 to levelCode for the first level after fewer than three trailing ones.
		code := 2*level - 2
		if level < 0 {
			code = -2*level - 1
		}
		code -= 2
		switch {
		case code < 14:
			w.u(uint(code)+1, 1)
		case code < 30:
			w.u(15, 1)
			w.u(4, uint32(code-14))
		default: // |level| ≤ 255 keeps code below 30 + 4096
			w.u(16, 1)
			w.u(12, uint32(code-30))
		}
	}
	w.u(1, 1) // total_zeros = 0 for TotalCoeff 1 (Table 9-7); no run_before follows
}

// coeffTokens holds the coeff_token codes (Table 9-5) for TotalCoeff 0 and 1, by nC
// range 0–1, 2–3, 4–7, 8+: {length, bits} for (TrailingOnes 0, TotalCoeff 0),
// (0, 1) and (1, 1). Neighbours count 0 or 16 coefficients here, so nC is 0, 8 or 16
// and the middle rows are never used; they are kept so the table reads like the spec.
var coeffTokens = [4][3][2]uint8{
	{{1, 0b1}, {6, 0b000101}, {2, 0b01}},
	{{2, 0b11}, {6, 0b001011}, {2, 0b10}},
	{{4, 0b1111}, {6, 0b001111}, {4, 0b1110}},
	{{6, 0b000011}, {6, 0b000000}, {6, 0b000001}}, // 6-bit fixed length
}

func writeCoeffToken(w *bitWriter, nC, totalCoeff, trailingOnes int) {
	var class int
	switch {
	case nC < 2:
		class = 0
	case nC < 4:
		class = 1
	case nC < 8:
		class = 2
	default:
		class = 3
	}
	c := coeffTokens[class][totalCoeff+trailingOnes]
	w.u(uint(c[0]), uint32(c[1]))
}

// flatDCLevel reports whether macroblock (mbx, mby) of cur has flat luma and chroma that
// chroma DC prediction (8.3.4.1–3) reproduces exactly; if so it returns the luma DC level,
// the difference between the luma value and its Intra 16x16 DC prediction (8.3.3.3). The
// neighbouring samples are those of cur because every coded macroblock reconstructs
// exactly, and constrained_intra_pred_flag is 0.
func (e *Encoder) flatDCLevel(mbx, mby int) (level int, ok bool) {
	p := &e.cur
	left, top := mbx > 0, mby > 0

	// Luma: one predicted value for all 256 samples.
	s := p.strideY
	o := mby*16*s + mbx*16
	v := p.y[o]
	for y := 0; y < 16; y++ {
		row := p.y[o+y*s : o+y*s+16]
		for _, b := range row {
			if b != v {
				return 0, false
			}
		}
	}
	sumTop, sumLeft := 0, 0
	if top {
		for _, b := range p.y[o-s : o-s+16] {
			sumTop += int(b)
		}
	}
	if left {
		for y := 0; y < 16; y++ {
			sumLeft += int(p.y[o+y*s-1])
		}
	}
	var lumaPred int
	switch {
	case top && left:
		lumaPred = (sumTop + sumLeft + 16) >> 5
	case top:
		lumaPred = (sumTop + 8) >> 4
	case left:
		lumaPred = (sumLeft + 8) >> 4
	default:
		lumaPred = 128
	}

	// Chroma: each 4x4 block has its own DC value, from the neighbours its position
	// prefers.
	s = p.strideC
	for _, c := range [2][]byte{p.cb, p.cr} {
		for blk := 0; blk < 4; blk++ {
			xO, yO := (blk&1)*4, (blk>>1)*4
			o := (mby*8+yO)*s + mbx*8 + xO
			sumTop, sumLeft := 0, 0
			if top {
				for _, b := range c[o-yO*s-s : o-yO*s-s+4] {
					sumTop += int(b)
				}
			}
			if left {
				for y := 0; y < 4; y++ {
					sumLeft += int(c[o+y*s-xO-1])
				}
			}
			var pred int
			switch {
			case (xO == 0 && yO == 0) || (xO > 0 && yO > 0):
				switch {
				case top && left:
					pred = (sumTop + sumLeft + 4) >> 3
				case left:
					pred = (sumLeft + 2) >> 2
				case top:
					pred = (sumTop + 2) >> 2
				default:
					pred = 128
				}
			case xO > 0: // top row of blocks: prefers the upper neighbour
				switch {
				case top:
					pred = (sumTop + 2) >> 2
				case left:
					pred = (sumLeft + 2) >> 2
				default:
					pred = 128
				}
			default: // left column of blocks: prefers the left neighbour
				switch {
				case left:
					pred = (sumLeft + 2) >> 2
				case top:
					pred = (sumTop + 2) >> 2
				default:
					pred = 128
				}
			}
			for y := 0; y < 4; y++ {
				for _, b := range c[o+y*s : o+y*s+4] {
					if int(b) != pred {
						return 0, false
					}
				}
			}
		}
	}
	return int(v) - lumaPred, true
}
