package audio

import "math"

// RMS returns the root-mean-square level of pcm in sample units (full scale is 32768).
// It returns 0 for an empty slice.
func RMS(pcm []int16) float64 {
	if len(pcm) == 0 {
		return 0
	}
	var sum float64
	for _, s := range pcm {
		v := float64(s)
		sum += v * v
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

// DBFS returns the RMS level of pcm in dB relative to a full-scale sine (whose RMS is
// 32767/√2), so a full-scale sine reads 0 dBFS and half amplitude about -6 dBFS.
// Silence returns -Inf.
func DBFS(pcm []int16) float64 {
	return 20 * math.Log10(RMS(pcm)/(32767/math.Sqrt2))
}

// Goertzel returns the power of the frequency component freq (Hz) in pcm sampled at
// sampleRate, in the same units as RMS squared: a pure sine of amplitude A at freq
// yields about A²/2, its RMS². freq need not fall on a DFT bin. It returns 0 for empty
// input or a non-positive sampleRate.
func Goertzel(pcm []int16, sampleRate int, freq float64) float64 {
	if len(pcm) == 0 || sampleRate <= 0 {
		return 0
	}
	return goertzel(pcm, nil, float64(sampleRate), freq)
}

// goertzel evaluates |X(freq)|² of pcm (optionally multiplied by window) and scales it
// so that a sine of amplitude A gives A²/2 (with the window's coherent gain removed).
func goertzel(pcm []int16, window []float64, rate, freq float64) float64 {
	w := 2 * math.Pi * freq / rate
	coeff := 2 * math.Cos(w)
	var s1, s2, gain float64
	for i, s := range pcm {
		x := float64(s)
		if window != nil {
			x *= window[i]
			gain += window[i]
		}
		s0 := x + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	if window == nil {
		gain = float64(len(pcm))
	}
	if gain == 0 {
		return 0
	}
	mag2 := s1*s1 + s2*s2 - coeff*s1*s2
	if mag2 < 0 { // rounding
		mag2 = 0
	}
	// A sine of amplitude A gives |X| ≈ A·gain/2, so 2|X|²/gain² ≈ A²/2.
	return 2 * mag2 / (gain * gain)
}

// Frequency range and step of DominantFrequency's coarse scan.
const (
	scanLow  = 50.0
	scanHigh = 4000.0
	scanStep = 5.0
)

// DominantFrequency returns the frequency (Hz) of the strongest component of pcm between
// 50 and 4000 Hz, or 0 when pcm is empty or silent. It scans a Hann-windowed spectrum in
// 5 Hz steps and then refines the peak by golden-section search, so a clean tone of a
// single 20 ms frame is found to well within ±1 Hz.
func DominantFrequency(pcm []int16, sampleRate int) float64 {
	if len(pcm) < 2 || sampleRate <= 0 {
		return 0
	}
	rate := float64(sampleRate)
	window := make([]float64, len(pcm))
	for i := range window {
		window[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(pcm)-1))
	}
	power := func(f float64) float64 { return goertzel(pcm, window, rate, f) }

	high := math.Min(scanHigh, rate/2-scanStep)
	best, bestPower := 0.0, 0.0
	for f := scanLow; f <= high; f += scanStep {
		if p := power(f); p > bestPower {
			best, bestPower = f, p
		}
	}
	if bestPower <= 0 {
		return 0
	}
	// The Hann main lobe is 4 bins wide, far wider than the step, so the true peak lies
	// within one step of the best sample and the power is unimodal there.
	lo, hi := math.Max(best-scanStep, 1), best+scanStep
	const phi = 0.6180339887498949
	a, b := hi-phi*(hi-lo), lo+phi*(hi-lo)
	pa, pb := power(a), power(b)
	for hi-lo > 0.01 {
		if pa > pb {
			hi, b, pb = b, a, pa
			a = hi - phi*(hi-lo)
			pa = power(a)
		} else {
			lo, a, pa = a, b, pb
			b = lo + phi*(hi-lo)
			pb = power(b)
		}
	}
	return (lo + hi) / 2
}

// Sine fills pcm with a sine of freq Hz and amplitude (a fraction of full scale, 0..1)
// at sampleRate, starting at phase (in cycles, 0..1). It returns the phase that
// continues the wave in the next call, so consecutive calls join seamlessly.
func Sine(pcm []int16, sampleRate int, freq, amplitude, phase float64) float64 {
	step := freq / float64(sampleRate)
	peak := amplitude * 32767
	for i := range pcm {
		pcm[i] = saturate(math.Round(peak * math.Sin(2*math.Pi*phase)))
		phase += step
		if phase >= 1 {
			phase -= math.Floor(phase)
		}
	}
	return phase
}

func saturate(v float64) int16 {
	switch {
	case v > math.MaxInt16:
		return math.MaxInt16
	case v < math.MinInt16:
		return math.MinInt16
	}
	return int16(v)
}
