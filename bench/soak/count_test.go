package main

import "testing"

// TestMinuteDelivery feeds three viewers' counters across a sequence-number wrap: one gets
// everything (with a duplicate and a late packet), one misses two packets, one stops half way.
func TestMinuteDelivery(t *testing.T) {
	var v [3]seqCount
	counts := []*seqCount{&v[0], &v[1], &v[2]}
	marks := []viewerMark{{high: -1}, {high: -1}, {high: -1}}
	pub := int64(-1)
	start := uint16(65530)
	for i := range uint16(20) {
		seq := start + i // wraps after 5
		if i != 7 {
			v[0].add(seq)
		}
		if i == 9 {
			v[0].add(seq)       // a NACK resend of one it had
			v[0].add(start + 7) // and the one it missed, late
		}
		if i != 3 && i != 12 {
			v[1].add(seq)
		}
		if i < 10 {
			v[2].add(seq)
		}
	}
	got := minute(counts, marks, &pub)
	if want := (tally{recv: 20 + 18 + 10, expected: 60}); got != want {
		t.Fatalf("first minute: %+v, want %+v", got, want)
	}
	for i := range uint16(10) {
		v[0].add(start + 20 + i)
		v[1].add(start + 20 + i)
	}
	got = minute(counts, marks, &pub)
	if want := (tally{recv: 20, expected: 30}); got != want {
		t.Fatalf("second minute: %+v, want %+v", got, want)
	}
	if p := got.percent(); p < 66.6 || p > 66.7 {
		t.Fatalf("second minute: %.2f %%, want 66.67", p)
	}
	if got = minute(counts, marks, &pub); got != (tally{}) {
		t.Fatalf("a minute with nothing sent: %+v", got)
	}
}
