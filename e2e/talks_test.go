package e2e

import (
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
)

// talks finds a talk's span and its dropouts where they are (the figures TestBrowser prints).
func TestTalksMeasuresDropouts(t *testing.T) {
	ms := func(n int) int { return n * device.SampleRate / 1000 }
	samples := make([]int16, ms(3000))
	// The tone starts 30 ms into a 0.1 s window: that is not a dropout.
	audio.Sine(samples[ms(530):ms(2500)], device.SampleRate, 700, 0.5, 0)
	clear(samples[ms(1030):ms(1060)]) // 30 ms gone at 0.5 s into the talk
	clear(samples[ms(2030):ms(2110)]) // and 80 ms at 1.5 s
	found := talks(samples, 700)
	if len(found) != 1 {
		t.Fatalf("%d talks, want 1", len(found))
	}
	tk := found[0]
	t.Logf("span %v, %d dropouts, %v silent, longest %v, at %s", tk.span, tk.dropouts, tk.silent, tk.longest, tk.where())
	if tk.span != 1970*time.Millisecond || tk.dropouts != 2 || tk.silent != 110*time.Millisecond || tk.longest != 80*time.Millisecond {
		t.Errorf("span %v, %d dropouts, %v silent, longest %v; want 1.97s, 2, 110ms, 80ms", tk.span, tk.dropouts, tk.silent, tk.longest)
	}
	if got, want := tk.where(), "500ms+30ms 1.5s+80ms"; got != want {
		t.Errorf("where %q, want %q", got, want)
	}
	if found := talks(make([]int16, ms(1000)), 700); len(found) != 0 {
		t.Errorf("%d talks in silence", len(found))
	}
}
