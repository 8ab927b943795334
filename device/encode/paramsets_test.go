package encode

import (
	"bytes"
	"testing"

	"github.com/camagent/camagent/device/h264"
)

func au(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 1), n...)
	}
	return b
}

func types(t *testing.T, b []byte) []byte {
	t.Helper()
	var ts []byte
	for _, n := range h264.SplitAnnexB(b) {
		ts = append(ts, h264.NALType(n))
	}
	return ts
}

func TestParamSets(t *testing.T) {
	var (
		sps   = []byte{0x67, 0x42, 0xc0, 0x1e}
		pps   = []byte{0x68, 0xce, 0x3c, 0x80}
		idr   = []byte{0x65, 0x88, 0x84}
		slice = []byte{0x41, 0x9a, 0x02}
		aud   = []byte{0x09, 0xf0}
		sei   = []byte{0x06, 0x05, 0x01}
	)
	var p ParamSets
	steps := []struct {
		name string
		in   []byte
		ok   bool
		key  bool
		want []byte
	}{
		{"slice before anything", au(slice), false, false, nil},
		{"parameter sets alone are kept", au(sps, pps), false, false, nil},
		{"first IDR gets them", au(idr), true, true, []byte{7, 8, 5}},
		{"P slice passes", au(slice), true, false, []byte{1}},
		{"delimited IDR with SEI", au(aud, sei, idr), true, true, []byte{9, 7, 8, 6, 5}},
		{"IDR with its own sets, reordered", au(sei, sps, pps, idr), true, true, []byte{7, 8, 6, 5}},
		{"P slice with delimiter", au(aud, slice), true, false, []byte{9, 1}},
	}
	for _, s := range steps {
		out, key, ok := p.Filter(s.in)
		if ok != s.ok || key != s.key {
			t.Fatalf("%s: ok %v key %v", s.name, ok, key)
		}
		if ok && !bytes.Equal(types(t, out), s.want) {
			t.Fatalf("%s: NAL types %v, want %v", s.name, types(t, out), s.want)
		}
	}
	// A new SPS replaces the cached one.
	sps2 := []byte{0x67, 0x42, 0xc0, 0x28}
	p.Filter(au(sps2, pps))
	out, _, _ := p.Filter(au(idr))
	if nals := h264.SplitAnnexB(out); !bytes.Equal(nals[0], sps2) {
		t.Errorf("IDR got SPS %x, want the newest %x", nals[0], sps2)
	}
	// Without parameter sets an IDR cannot start the stream.
	var q ParamSets
	if _, _, ok := q.Filter(au(idr)); ok {
		t.Error("an IDR without any SPS/PPS started the stream")
	}
}

func FuzzParamSets(f *testing.F) {
	f.Add(au([]byte{0x67, 1}, []byte{0x68, 2}, []byte{0x65, 3}))
	f.Add([]byte{0, 0, 0, 1, 0x09})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p ParamSets
		p.Filter(b)
		out, key, ok := p.Filter(b)
		if ok && key && len(out) == 0 {
			t.Fatal("empty keyframe")
		}
	})
}
