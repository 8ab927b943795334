package bench

import (
	"math"
	"slices"
	"time"
)

// Durations collects samples and reports percentiles in milliseconds.
type Durations []time.Duration

// Minus returns each duration less c.
func (d Durations) Minus(c time.Duration) Durations {
	out := make(Durations, len(d))
	for i, v := range d {
		out[i] = v - c
	}
	return out
}

// P returns the q-th percentile (0..100) in ms by the nearest-rank method; NaN when empty.
func (d Durations) P(q float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(q / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return ms(s[rank-1])
}

// Max returns the largest sample in ms.
func (d Durations) Max() float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	return ms(slices.Max(d))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
