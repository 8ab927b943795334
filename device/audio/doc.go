// Package audio holds the PCM building blocks shared by the agent's microphones and
// speakers: a synthetic Tone microphone, a Pacer that keeps a drift-free real-time
// schedule, a Mixer that sums several remote users into one speaker stream, and
// analysis helpers (Goertzel, DominantFrequency, RMS) that tests across the repo use
// to check that audio survived a path.
//
// Everything here speaks the agent's one audio format (see package device): 48 kHz,
// mono, signed 16-bit, 20 ms frames of device.FrameSamples samples.
package audio
