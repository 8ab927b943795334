package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/camagent/camagent/device"
)

const (
	headerSize = 44
	// maxDataSize keeps the RIFF size field (data + 36) within 32 bits: about 12.4
	// hours of 48 kHz mono 16-bit audio.
	maxDataSize = 0xFFFFFFFF - 36 - 1
)

// ErrFull is returned by WriteFrame once the file has reached the 4 GiB WAV limit.
var ErrFull = errors.New("wav: file reached the 4 GiB WAV size limit")

// ErrClosed is returned by WriteFrame after Close.
var ErrClosed = errors.New("wav: closed")

// Writer is a device.Speaker that records 48 kHz mono 16-bit PCM to a WAV file.
//
// The header's size fields are patched every second of audio written (and by Sync and
// Close), so a reader opening the file while the agent runs sees a valid file holding
// all but the last second at most. A Writer is safe for concurrent use.
type Writer struct {
	path string

	mu          sync.Mutex
	f           *os.File
	data        int64 // bytes of samples written
	patched     int64 // data size in the header
	patchEvery  int64
	buf         []byte
	closed      bool
	writeFailed error
}

var _ device.Speaker = (*Writer)(nil)

// Create creates (or truncates) the WAV file at path and writes its header.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wav: create: %w", err)
	}
	w := &Writer{
		path:       path,
		f:          f,
		patchEvery: device.SampleRate * 2, // one second of bytes
	}
	if err := w.writeHeader(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return w, nil
}

// Path returns the file's path.
func (w *Writer) Path() string { return w.path }

func (w *Writer) writeHeader() error {
	var h [headerSize]byte
	copy(h[0:4], "RIFF")
	binary.LittleEndian.PutUint32(h[4:8], uint32(36+w.data))
	copy(h[8:12], "WAVE")
	copy(h[12:16], "fmt ")
	binary.LittleEndian.PutUint32(h[16:20], 16)
	binary.LittleEndian.PutUint16(h[20:22], formatPCM)
	binary.LittleEndian.PutUint16(h[22:24], device.Channels)
	binary.LittleEndian.PutUint32(h[24:28], device.SampleRate)
	binary.LittleEndian.PutUint32(h[28:32], device.SampleRate*device.Channels*2)
	binary.LittleEndian.PutUint16(h[32:34], device.Channels*2)
	binary.LittleEndian.PutUint16(h[34:36], 16)
	copy(h[36:40], "data")
	binary.LittleEndian.PutUint32(h[40:44], uint32(w.data))
	if _, err := w.f.WriteAt(h[:], 0); err != nil {
		return fmt.Errorf("wav: write header of %s: %w", w.path, err)
	}
	w.patched = w.data
	return nil
}

// WriteFrame appends pcm (any length; normally one frame) to the file.
func (w *Writer) WriteFrame(pcm []int16) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.writeFailed != nil {
		return w.writeFailed
	}
	n := int64(len(pcm)) * 2
	if w.data+n > maxDataSize {
		return ErrFull
	}
	if cap(w.buf) < int(n) {
		w.buf = make([]byte, n)
	}
	b := w.buf[:n]
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	if _, err := w.f.WriteAt(b, headerSize+w.data); err != nil {
		// A short write leaves the file inconsistent past the patched size; stop
		// rather than write more after a gap.
		w.writeFailed = fmt.Errorf("wav: write %s: %w", w.path, err)
		return w.writeFailed
	}
	w.data += n
	if w.data-w.patched >= w.patchEvery {
		return w.writeHeader()
	}
	return nil
}

// Sync patches the header with the current size and flushes the file to stable
// storage.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if err := w.writeHeader(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("wav: sync %s: %w", w.path, err)
	}
	return nil
}

// Samples returns how many samples have been written.
func (w *Writer) Samples() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.data / 2
}

// Close patches the header and closes the file. Closing twice is a no-op.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	herr := w.writeHeader()
	cerr := w.f.Close()
	if herr != nil {
		return herr
	}
	if cerr != nil {
		return fmt.Errorf("wav: close %s: %w", w.path, cerr)
	}
	return nil
}
