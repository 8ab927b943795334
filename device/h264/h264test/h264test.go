// Package h264test decodes H.264 Annex-B streams with the ffmpeg command, for tests that
// must prove a stream decodes with the decoder Chromium uses. A missing ffmpeg fails the
// test: a skipped decode would prove nothing.
package h264test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/camagent/camagent/device/h264"
)

// FFmpeg returns the path of the ffmpeg binary or fails tb.
func FFmpeg(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("ffmpeg"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/ffmpeg"); err == nil {
		return "/usr/bin/ffmpeg"
	}
	tb.Fatal("ffmpeg not found in PATH or at /usr/bin/ffmpeg: install it (apt-get install ffmpeg); " +
		"the decode tests need it and do not skip")
	return ""
}

// Decode decodes an Annex-B stream of width×height pictures to I420 frames with
// `ffmpeg -v error -f h264 -i in.h264 -f rawvideo -pix_fmt yuv420p`. It fails tb when
// ffmpeg exits with an error, writes anything to stderr, or outputs a partial frame.
func Decode(tb testing.TB, stream []byte, width, height int) []*h264.Frame {
	tb.Helper()
	ffmpeg := FFmpeg(tb)
	dir := tb.TempDir()
	in := filepath.Join(dir, "in.h264")
	out := filepath.Join(dir, "out.yuv")
	if err := os.WriteFile(in, stream, 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-f", "h264", "-i", in,
		"-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-y", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("ffmpeg: %v\n%s", err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		tb.Fatalf("ffmpeg reported errors:\n%s", stderr.Bytes())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	cw, ch := width/2, height/2
	size := width*height + 2*cw*ch
	if len(raw)%size != 0 {
		tb.Fatalf("ffmpeg output is %d bytes, not a multiple of the %dx%d frame size %d", len(raw), width, height, size)
	}
	frames := make([]*h264.Frame, 0, len(raw)/size)
	for len(raw) > 0 {
		b := raw[:size]
		raw = raw[size:]
		frames = append(frames, &h264.Frame{
			Width: width, Height: height,
			Y:  b[:width*height],
			Cb: b[width*height : width*height+cw*ch],
			Cr: b[width*height+cw*ch:],
		})
	}
	return frames
}
