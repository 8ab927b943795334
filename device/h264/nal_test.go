package h264

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestEmulationPrevention(t *testing.T) {
	cases := []struct{ rbsp, nal []byte }{
		{[]byte{1, 2, 3}, []byte{1, 2, 3}},
		{[]byte{0, 0, 0}, []byte{0, 0, 3, 0}},
		{[]byte{0, 0, 1}, []byte{0, 0, 3, 1}},
		{[]byte{0, 0, 2}, []byte{0, 0, 3, 2}},
		{[]byte{0, 0, 3}, []byte{0, 0, 3, 3}},
		{[]byte{0, 0, 4}, []byte{0, 0, 4}},
		{[]byte{0, 0, 0, 0, 0, 0}, []byte{0, 0, 3, 0, 0, 3, 0, 0}},
		{[]byte{5, 0, 0, 1, 0, 0, 0x80}, []byte{5, 0, 0, 3, 1, 0, 0, 0x80}},
	}
	for _, c := range cases {
		got := appendNAL(nil, 3, NALSEI, c.rbsp)
		want := append([]byte{0, 0, 0, 1, 0x66}, c.nal...)
		if !bytes.Equal(got, want) {
			t.Errorf("appendNAL(% x) = % x, want % x", c.rbsp, got, want)
		}
		if back := unescape(nil, got[5:]); !bytes.Equal(back, c.rbsp) {
			t.Errorf("unescape(% x) = % x, want % x", got[5:], back, c.rbsp)
		}
	}
	// Random payloads rich in small bytes: no start code may appear inside a NAL unit,
	// and unescaping restores the payload.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		rbsp := make([]byte, r.IntN(64)+1)
		for j := range rbsp {
			rbsp[j] = byte(r.IntN(5))
		}
		rbsp[len(rbsp)-1] = 0x80 // RBSPs end in rbsp_stop_one_bit
		nal := appendNAL(nil, 0, NALSEI, rbsp)[4:]
		for k := 0; k+2 < len(nal); k++ {
			if nal[k] == 0 && nal[k+1] == 0 && nal[k+2] <= 2 {
				t.Fatalf("start code emulation at %d in % x", k, nal)
			}
		}
		if back := unescape(nil, nal[1:]); !bytes.Equal(back, rbsp) {
			t.Fatalf("round trip: % x -> % x -> % x", rbsp, nal, back)
		}
	}
}

func TestSplitAnnexB(t *testing.T) {
	stream := []byte{
		0xaa,                   // junk before the first start code
		0, 0, 0, 1, 0x67, 1, 2, // 4-byte start code
		0, 0, 1, 0x68, 3, // 3-byte start code
		0, 0, 0, 1, 0x06, 0, 0, 3, 1, 0x80, 0, 0, // trailing zeros
		0, 0, 1, 0x65, 0xff,
	}
	got := SplitAnnexB(stream)
	want := [][]byte{{0x67, 1, 2}, {0x68, 3}, {0x06, 0, 0, 3, 1, 0x80}, {0x65, 0xff}}
	if len(got) != len(want) {
		t.Fatalf("got %d NAL units % x, want %d", len(got), got, len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("NAL %d = % x, want % x", i, got[i], want[i])
		}
	}
	if !IsKeyframe(stream) {
		t.Error("IsKeyframe = false for a stream with an IDR slice")
	}
	if IsKeyframe(stream[:len(stream)-5]) {
		t.Error("IsKeyframe = true without an IDR slice")
	}
	if n := len(SplitAnnexB([]byte{1, 2, 3, 0, 0})); n != 0 {
		t.Errorf("no start code: %d NAL units", n)
	}
}
