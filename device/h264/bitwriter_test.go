package h264

import (
	"strings"
	"testing"
)

// bitString renders the written bits (whole bytes plus the pending ones) as "0101…".
func bitString(w *bitWriter) string {
	var sb strings.Builder
	for _, b := range w.buf {
		for i := 7; i >= 0; i-- {
			sb.WriteByte('0' + b>>uint(i)&1)
		}
	}
	for i := int(w.nacc) - 1; i >= 0; i-- {
		sb.WriteByte('0' + byte(w.acc>>uint(i)&1))
	}
	return sb.String()
}

func TestExpGolomb(t *testing.T) {
	ue := []struct {
		v    uint32
		bits string
	}{
		{0, "1"}, {1, "010"}, {2, "011"}, {3, "00100"}, {6, "00111"}, {7, "0001000"},
		{25, "000011010"}, {30, "000011111"}, {254, "000000011111111"},
		{65535, "000000000000000010000000000000000"},
	}
	for _, c := range ue {
		var w bitWriter
		w.ue(c.v)
		if got := bitString(&w); got != c.bits {
			t.Errorf("ue(%d) = %s, want %s", c.v, got, c.bits)
		}
	}
	se := []struct {
		v    int32
		bits string
	}{
		{0, "1"}, {1, "010"}, {-1, "011"}, {2, "00100"}, {-2, "00101"}, {3, "00110"},
	}
	for _, c := range se {
		var w bitWriter
		w.se(c.v)
		if got := bitString(&w); got != c.bits {
			t.Errorf("se(%d) = %s, want %s", c.v, got, c.bits)
		}
	}
}

func TestBitWriterFixedAndAlign(t *testing.T) {
	var w bitWriter
	w.u(3, 0b101)
	w.flag(true)
	w.u(32, 0xdeadbeef)
	if got, want := bitString(&w), "1011"+"11011110101011011011111011101111"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	w.alignZero()
	if !w.aligned() || bitString(&w) != "1011"+"11011110101011011011111011101111"+"0000" {
		t.Fatalf("alignZero: %s", bitString(&w))
	}
	w.bytes([]byte{0x01, 0xff})
	w.u(1, 1)
	w.bytes([]byte{0x80}) // unaligned path
	w.trailing()
	want := []byte{0xbd, 0xea, 0xdb, 0xee, 0xf0, 0x01, 0xff, 0xc0, 0x40}
	if string(w.buf) != string(want) || w.nacc != 0 {
		t.Fatalf("got % x (+%d bits), want % x", w.buf, w.nacc, want)
	}
}
