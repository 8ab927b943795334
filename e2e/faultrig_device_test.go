package e2e

// The device faults' hardware (faults_device_test.go): a camera behind rpicam-vid and a sound
// card behind alsa-lib that the test can take away and give back.
//
//   - the camera: rpicam-vid on the agent's PATH is a stand-in that encodes a test pattern
//     with ffmpeg (libx264, in real time) while its "camera" (a file) is attached; when the
//     file goes it stops its stream and exits with an error, and while it is gone every
//     start fails at once ("no cameras available"), as rpicam-vid does without a camera;
//   - the speaker: alsa-lib's file plugin (over the null PCM, in an .asoundrc in the
//     agent's HOME) writes what aplay plays into a FIFO this test reads. Closing the FIFO is
//     the sound card going away: aplay's next write finds no reader (EPIPE) and it dies;
//     restarted, it blocks opening the FIFO until the test reads it again.

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"golang.org/x/sys/unix"
)

// rpicamStandIn is the rpicam-vid of the camera fault, a shell script: it takes the size,
// rate and IDR period rpicam-vid is given, and the file that stands for the camera.
const rpicamStandIn = `#!/bin/sh
# rpicam-vid stand-in (e2e/faults_device_test.go): a test pattern encoded by ffmpeg while
# the camera file %[1]q exists.
cam=%[1]q w=640 h=480 fps=30 intra=60
while [ $# -gt 0 ]; do
  case "$1" in
    --width) w=$2; shift;; --height) h=$2; shift;; --framerate) fps=$2; shift;; --intra) intra=$2; shift;;
  esac
  shift
done
[ -e "$cam" ] || { echo "ERROR: *** no cameras available ***" >&2; exit 1; }
ffmpeg -nostdin -hide_banner -loglevel error -re -f lavfi -i "testsrc2=size=${w}x${h}:rate=$fps" \
  -c:v libx264 -preset ultrafast -tune zerolatency -threads 1 -profile:v baseline -g "$intra" \
  -flush_packets 1 -f h264 - &
pid=$!
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
while [ -e "$cam" ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
kill $pid 2>/dev/null
echo "ERROR: camera disconnected" >&2
exit 1
`

// deviceRig is the hardware of the device faults: a camera behind rpicam-vid and a sound
// card behind alsa-lib, both of which the test can take away and give back.
type deviceRig struct {
	dir, bin, camera string
	tap              *speakerTap
}

func newDeviceRig(t *testing.T) *deviceRig {
	t.Helper()
	requireDeviceTools(t)
	dir := t.TempDir()
	r := &deviceRig{dir: dir, bin: filepath.Join(dir, "bin"), camera: filepath.Join(dir, "camera")}
	must(t, os.Mkdir(r.bin, 0o755), "stand-in directory")
	must(t, os.WriteFile(filepath.Join(r.bin, "rpicam-vid"), fmt.Appendf(nil, rpicamStandIn, r.camera), 0o755), "rpicam-vid stand-in")
	r.plugCamera(t)
	fifo := filepath.Join(dir, "speaker.fifo")
	must(t, unix.Mkfifo(fifo, 0o600), "speaker FIFO")
	must(t, os.WriteFile(filepath.Join(dir, ".asoundrc"), fmt.Appendf(nil, `
pcm.faultspk {
	type file
	slave.pcm null
	file %q
	format raw
}
`, fifo), 0o644), ".asoundrc")
	r.tap = &speakerTap{path: fifo, tone: viewerTone}
	r.tap.open(t)
	t.Cleanup(r.tap.close) // after the agent's (cleanups run last first)
	return r
}

// env makes the agent find the stand-in rpicam-vid and alsa-lib the .asoundrc.
func (r *deviceRig) env() []string {
	return []string{"PATH=" + r.bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + r.dir, "XDG_CONFIG_HOME=" + filepath.Join(r.dir, ".config")}
}

func (r *deviceRig) plugCamera(t *testing.T) time.Time {
	must(t, os.WriteFile(r.camera, nil, 0o644), "attach the camera")
	return time.Now()
}

func (r *deviceRig) unplugCamera(t *testing.T) {
	must(t, os.Remove(r.camera), "detach the camera")
}

// speakerTap reads what the device's speaker plays from the FIFO and notes every 20 ms in
// which it hears the viewer's tone.
type speakerTap struct {
	path string
	tone float64

	mu        sync.Mutex
	voiced    int       // 20 ms frames of the tone heard
	lastVoice time.Time // when the last one was

	f    *os.File
	done chan struct{} // closed when the reader of f has ended
}

// open plugs the sound card in: O_RDWR opens the FIFO without waiting for a writer.
func (s *speakerTap) open(t *testing.T) time.Time {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	must(t, err, "open the speaker's FIFO")
	s.f, s.done = f, make(chan struct{})
	go s.read(f, s.done)
	return time.Now()
}

// close unplugs it: nobody reads the FIFO any more.
func (s *speakerTap) close() {
	if s.f != nil {
		s.f.Close()
		<-s.done
		s.f = nil
	}
}

func (s *speakerTap) read(f *os.File, done chan struct{}) {
	defer close(done)
	b := make([]byte, 2*device.FrameSamples)
	pcm := make([]int16, device.FrameSamples)
	for {
		if _, err := io.ReadFull(f, b); err != nil {
			return
		}
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
		}
		if audio.RMS(pcm) < 1000 || math.Abs(audio.DominantFrequency(pcm, device.SampleRate)-s.tone) > 5 {
			continue
		}
		s.mu.Lock()
		s.voiced++
		s.lastVoice = time.Now()
		s.mu.Unlock()
	}
}

func (s *speakerTap) voicedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.voiced
}

// voiceAfter waits for the viewer's tone at the speaker after t0 and returns when it came.
func (s *speakerTap) voiceAfter(t *testing.T, t0 time.Time, timeout time.Duration) time.Time {
	t.Helper()
	return waitAfter(t, &s.mu, "at the device's speaker", fmt.Sprintf("%.0f Hz tone", s.tone),
		func() time.Time { return s.lastVoice }, nil, t0, timeout)
}
