package h264

import (
	"fmt"
	"math"
)

const (
	profileBaseline = 66
	// constraint_set0_flag and constraint_set1_flag: Constrained Baseline (A.2.1.1),
	// which every WebRTC endpoint decodes (profile-level-id 42e0xx).
	constraintFlags = 0xc0
	log2MaxFrameNum = 12
	maxFrameNum     = 1 << log2MaxFrameNum
)

// level is one row of H.264 Table A-1 that matters here.
type level struct {
	idc     byte
	maxMBPS int // macroblocks per second
	maxFS   int // macroblocks per frame
}

var levels = []level{
	{10, 1485, 99},
	{11, 3000, 396},
	{12, 6000, 396},
	{13, 11880, 396},
	{20, 11880, 396},
	{21, 19800, 792},
	{22, 20250, 1620},
	{30, 40500, 1620},
	{31, 108000, 3600},
	{32, 216000, 5120},
	{40, 245760, 8192},
	{41, 245760, 8192},
	{42, 522240, 8704},
	{50, 589824, 22080},
	{51, 983040, 36864},
	{52, 2073600, 36864},
}

// chooseLevel returns the lowest level_idc whose frame size, macroblock rate and
// picture dimensions (each at most sqrt(8*MaxFS) macroblocks, A.3.1) admit the format.
func chooseLevel(mbW, mbH, fps int) (byte, error) {
	fs := mbW * mbH
	for _, l := range levels {
		side := int(math.Sqrt(float64(8 * l.maxFS)))
		if fs <= l.maxFS && fs*fps <= l.maxMBPS && mbW <= side && mbH <= side {
			return l.idc, nil
		}
	}
	return 0, fmt.Errorf("h264: %dx%d macroblocks at %d fps exceeds level 5.2", mbW, mbH, fps)
}

// writeSPS writes seq_parameter_set_rbsp (7.3.2.1.1) with VUI (E.1.1).
func (e *Encoder) writeSPS(w *bitWriter) {
	w.u(8, profileBaseline)
	w.u(8, constraintFlags)
	w.u(8, uint32(e.levelIdc))
	w.ue(0)                           // seq_parameter_set_id
	w.ue(log2MaxFrameNum - 4)         // log2_max_frame_num_minus4
	w.ue(2)                           // pic_order_cnt_type: POC follows frame_num, no reordering
	w.ue(1)                           // max_num_ref_frames
	w.flag(false)                     // gaps_in_frame_num_value_allowed_flag
	w.ue(uint32(e.mbW - 1))           // pic_width_in_mbs_minus1
	w.ue(uint32(e.mbH - 1))           // pic_height_in_map_units_minus1
	w.flag(true)                      // frame_mbs_only_flag
	w.flag(true)                      // direct_8x8_inference_flag
	cropR := (e.mbW*16 - e.width) / 2 // CropUnitX = CropUnitY = 2 for 4:2:0 frames
	cropB := (e.mbH*16 - e.height) / 2
	if cropR != 0 || cropB != 0 {
		w.flag(true) // frame_cropping_flag
		w.ue(0)
		w.ue(uint32(cropR))
		w.ue(0)
		w.ue(uint32(cropB))
	} else {
		w.flag(false)
	}
	w.flag(true)             // vui_parameters_present_flag
	w.flag(false)            // aspect_ratio_info_present_flag
	w.flag(false)            // overscan_info_present_flag
	w.flag(false)            // video_signal_type_present_flag
	w.flag(false)            // chroma_loc_info_present_flag
	w.flag(true)             // timing_info_present_flag
	w.u(32, 1)               // num_units_in_tick
	w.u(32, uint32(2*e.fps)) // time_scale: two ticks per frame
	w.flag(true)             // fixed_frame_rate_flag
	w.flag(false)            // nal_hrd_parameters_present_flag
	w.flag(false)            // vcl_hrd_parameters_present_flag
	w.flag(false)            // pic_struct_present_flag
	w.flag(true)             // bitstream_restriction_flag
	w.flag(true)             // motion_vectors_over_pic_boundaries_flag
	w.ue(0)                  // max_bytes_per_pic_denom: no limit (I_PCM pictures are big)
	w.ue(0)                  // max_bits_per_mb_denom: no limit
	w.ue(15)                 // log2_max_mv_length_horizontal
	w.ue(15)                 // log2_max_mv_length_vertical
	w.ue(0)                  // max_num_reorder_frames: output each picture at once
	w.ue(1)                  // max_dec_frame_buffering
	w.trailing()
}

// writePPS writes pic_parameter_set_rbsp (7.3.2.2).
func writePPS(w *bitWriter) {
	w.ue(0)       // pic_parameter_set_id
	w.ue(0)       // seq_parameter_set_id
	w.flag(false) // entropy_coding_mode_flag: CAVLC
	w.flag(false) // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)       // num_slice_groups_minus1
	w.ue(0)       // num_ref_idx_l0_default_active_minus1
	w.ue(0)       // num_ref_idx_l1_default_active_minus1
	w.flag(false) // weighted_pred_flag
	w.u(2, 0)     // weighted_bipred_idc
	w.se(0)       // pic_init_qp_minus26
	w.se(0)       // pic_init_qs_minus26
	w.se(0)       // chroma_qp_index_offset
	w.flag(true)  // deblocking_filter_control_present_flag
	w.flag(false) // constrained_intra_pred_flag
	w.flag(false) // redundant_pic_cnt_present_flag
	w.trailing()
}
