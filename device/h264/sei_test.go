package h264

import (
	"testing"
	"time"
)

func TestFrameInfoRoundTrip(t *testing.T) {
	for _, info := range []FrameInfo{
		{Counter: 0, CaptureTime: time.Unix(0, 0x0000000100000000)}, // zero runs → escapes
		{Counter: 1, CaptureTime: time.Unix(1700000000, 123456789)},
		{Counter: 1<<64 - 1, CaptureTime: time.Unix(0, 1)},
		{Counter: 42}, // zero time stays zero
	} {
		var w bitWriter
		writeSEI(&w, info)
		au := appendNAL(nil, 0, NALSEI, w.buf)
		au = appendNAL(au, 3, NALIDR, []byte{0x88, 0x80}) // a slice after it
		c, ts, ok := ParseFrameInfo(au)
		if !ok || c != info.Counter || !ts.Equal(info.CaptureTime) {
			t.Errorf("ParseFrameInfo = %d, %v, %v; want %d, %v", c, ts, ok, info.Counter, info.CaptureTime)
		}
	}
	if _, _, ok := ParseFrameInfo(appendNAL(nil, 0, NALSEI, []byte{5, 2, 1, 2, 0x80})); ok {
		t.Error("ParseFrameInfo accepted a foreign user_data_unregistered payload")
	}
}

func FuzzParseFrameInfo(f *testing.F) {
	var w bitWriter
	writeSEI(&w, FrameInfo{Counter: 7, CaptureTime: time.Unix(5, 0)})
	f.Add(appendNAL(nil, 0, NALSEI, w.buf))
	f.Add([]byte{0, 0, 1, 6, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseFrameInfo(b)
		for _, nal := range SplitAnnexB(b) {
			if len(nal) == 0 {
				t.Fatal("empty NAL unit")
			}
		}
	})
}
