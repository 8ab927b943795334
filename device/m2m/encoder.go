package m2m

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/camagent/camagent/device/encode"
	"github.com/camagent/camagent/device/h264"
)

// DefaultPath is the Raspberry Pi's H.264 encoder node.
const DefaultPath = "/dev/video11"

// Options configure an Encoder.
type Options struct {
	Width, Height, FPS int
	// Bitrate in bit/s (default: about 0.1 bit per pixel per frame, at least 500 kbit/s).
	Bitrate int
	// GOP is the time between periodic IDRs (default 2 s).
	GOP time.Duration
	// Buffers per queue (default 3, 2 to 8).
	Buffers int
	// Timeout for one picture to come out (default 1 s).
	Timeout time.Duration
	// Logger (component=m2m); nil discards.
	Logger *slog.Logger
}

// ErrNotEncoder is wrapped when the device is not a multi-planar M2M encoder.
var ErrNotEncoder = errors.New("m2m: not a multi-planar memory-to-memory device")

type mapped struct {
	mem    []byte
	queued bool
}

// Encoder is a V4L2 M2M H.264 encoder as an encode.Encoder.
type Encoder struct {
	dev     Device
	log     *slog.Logger
	o       Options
	name    string
	in, out []mapped
	stride  int // luma bytes per line of an OUTPUT picture
	rows    int // luma rows the driver reserves (the height aligned by the driver)
	inSize  int
	ps      encode.ParamSets
	planes  []plane // scratch for QBUF/DQBUF (kept alive across the ioctl)
}

var _ encode.Encoder = (*Encoder)(nil)

// Open opens and configures the encoder at path (DefaultPath on a Pi).
func Open(path string, o Options) (*Encoder, error) {
	dev, err := OpenDevice(path)
	if err != nil {
		return nil, err
	}
	e, err := New(dev, o)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// Available reports whether path is a multi-planar M2M device that accepts YU12 and
// produces H.264.
func Available(path string) error {
	dev, err := OpenDevice(path)
	if err != nil {
		return err
	}
	defer dev.Close()
	_, err = checkCaps(dev)
	return err
}

func checkCaps(dev Device) (string, error) {
	var c capability
	if err := dev.Ioctl(vidiocQuerycap, unsafe.Pointer(&c)); err != nil {
		return "", fmt.Errorf("m2m: VIDIOC_QUERYCAP: %w", err)
	}
	caps := c.Capabilities
	if caps&capDeviceCaps != 0 {
		caps = c.DeviceCaps
	}
	card := string(bytes.TrimRight(c.Card[:], "\x00"))
	if caps&capVideoM2MMPlane == 0 || caps&capStreaming == 0 {
		return card, fmt.Errorf("%w (%s, caps %#x)", ErrNotEncoder, card, caps)
	}
	return card, nil
}

// New configures the encoder on an open device; the Encoder owns dev from then on
// (when New fails the caller still owns it).
func New(dev Device, o Options) (*Encoder, error) {
	if o.Width <= 0 || o.Height <= 0 || o.Width%2 != 0 || o.Height%2 != 0 {
		return nil, fmt.Errorf("m2m: picture size %dx%d must be positive and even", o.Width, o.Height)
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.GOP <= 0 {
		o.GOP = 2 * time.Second
	}
	if o.Bitrate <= 0 {
		o.Bitrate = max(500_000, o.Width*o.Height*o.FPS/10)
	}
	if o.Buffers == 0 {
		o.Buffers = 3
	}
	o.Buffers = min(max(o.Buffers, 2), 8)
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Encoder{dev: dev, o: o, log: o.Logger.With("component", "m2m"), planes: make([]plane, 1)}
	card, err := checkCaps(dev)
	if err != nil {
		return nil, err
	}
	e.name = "hardware M2M (" + card + ")"
	if err := e.configure(); err != nil {
		e.release()
		return nil, err
	}
	return e, nil
}

// configure follows the stateful encoder's initialisation (dev-encoder.rst).
func (e *Encoder) configure() error {
	o := e.o
	// 1. The coded format on CAPTURE first: it decides what OUTPUT accepts.
	var f format
	f.SetType(bufTypeCaptureMPlane)
	f.SetPixMP(pixMP{Width: uint32(o.Width), Height: uint32(o.Height), PixelFormat: pixFmtH264, Field: fieldNone,
		NumPlanes: 1, SizeImage: [8]uint32{uint32(max(512<<10, o.Width*o.Height))}})
	if err := e.dev.Ioctl(vidiocSFmt, unsafe.Pointer(&f)); err != nil {
		return fmt.Errorf("m2m: set CAPTURE format H.264: %w", err)
	}
	if got := f.PixMP().PixelFormat; got != pixFmtH264 {
		return fmt.Errorf("m2m: CAPTURE format is %#x, not H.264", got)
	}
	// 2. The raw format on OUTPUT: the driver answers with its stride and plane size.
	f = format{}
	f.SetType(bufTypeOutputMPlane)
	f.SetPixMP(pixMP{Width: uint32(o.Width), Height: uint32(o.Height), PixelFormat: pixFmtYU12, Field: fieldNone,
		NumPlanes: 1, BytesPerLine: [8]uint32{uint32(o.Width)}})
	if err := e.dev.Ioctl(vidiocSFmt, unsafe.Pointer(&f)); err != nil {
		return fmt.Errorf("m2m: set OUTPUT format YU12 %dx%d: %w", o.Width, o.Height, err)
	}
	p := f.PixMP()
	if p.PixelFormat != pixFmtYU12 || p.NumPlanes != 1 || int(p.Width) != o.Width || int(p.Height) != o.Height {
		return fmt.Errorf("m2m: driver changed OUTPUT format to %#x %dx%d with %d planes", p.PixelFormat, p.Width, p.Height, p.NumPlanes)
	}
	e.stride, e.inSize = int(p.BytesPerLine[0]), int(p.SizeImage[0])
	if e.stride < o.Width {
		e.stride = o.Width
	}
	// The driver may reserve more rows than the picture has (bcm2835 aligns to 16):
	// sizeimage = stride·rows·3/2.
	e.rows = max(o.Height, e.inSize*2/(3*e.stride))
	if e.inSize < e.stride*e.rows*3/2 {
		e.inSize = e.stride * e.rows * 3 / 2
	}
	// 3. Frame rate on OUTPUT (v4l2_outputparm.timeperframe), then the controls.
	sp := streamParm{Type: bufTypeOutputMPlane}
	putU32(sp.Parm[8:], 1)
	putU32(sp.Parm[12:], uint32(o.FPS))
	if err := e.dev.Ioctl(vidiocSParm, unsafe.Pointer(&sp)); err != nil {
		e.log.Info("encoder refused the frame rate", "fps", o.FPS, "err", err)
	}
	gop := max(1, int(o.GOP.Seconds()*float64(o.FPS)+0.5))
	for _, c := range []struct {
		name  string
		id    uint32
		value int32
	}{
		{"bitrate", cidBitrate, int32(o.Bitrate)},
		{"I-frame period", cidH264IPeriod, int32(gop)},
		{"profile constrained baseline", cidH264Profile, profileConstrainedBaseline},
		{"level", cidH264Level, int32(levelFor(o.Width, o.Height, o.FPS))},
		{"repeat SPS/PPS", cidRepeatSeqHeader, 1},
	} {
		if err := e.setControl(c.id, c.value); err != nil {
			e.log.Info("encoder refused a control", "control", c.name, "value", c.value, "err", err)
		}
	}
	// 4. Buffers: OUTPUT ones are filled by Encode; every CAPTURE one is queued now.
	var err error
	if e.in, err = e.allocate(bufTypeOutputMPlane); err != nil {
		return err
	}
	if e.out, err = e.allocate(bufTypeCaptureMPlane); err != nil {
		return err
	}
	for i := range e.out {
		if err := e.queue(bufTypeCaptureMPlane, i, 0, time.Time{}); err != nil {
			return err
		}
	}
	for _, t := range []uint32{bufTypeOutputMPlane, bufTypeCaptureMPlane} {
		if err := e.dev.Ioctl(vidiocStreamon, unsafe.Pointer(&t)); err != nil {
			return fmt.Errorf("m2m: VIDIOC_STREAMON %s: %w", typeName(t), err)
		}
	}
	e.log.Info("hardware encoder ready", "size", fmt.Sprintf("%dx%d", o.Width, o.Height), "fps", o.FPS,
		"bitrate", o.Bitrate, "gop", gop, "stride", e.stride, "rows", e.rows)
	return nil
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func typeName(t uint32) string {
	if t == bufTypeOutputMPlane {
		return "OUTPUT"
	}
	return "CAPTURE"
}

// levelFor is the lowest H.264 level (Table A-1) for the picture size and rate among
// the ones the Pi's encoder offers.
func levelFor(w, h, fps int) int {
	mbs := ((w + 15) / 16) * ((h + 15) / 16)
	switch rate := mbs * fps; {
	case mbs <= 1620 && rate <= 40500:
		return level30
	case mbs <= 3600 && rate <= 108000:
		return level31
	case mbs <= 8192 && rate <= 245760:
		return level40
	default:
		return level42
	}
}

func (e *Encoder) setControl(id uint32, v int32) error {
	c := control{ID: id, Value: v}
	return e.dev.Ioctl(vidiocSCtrl, unsafe.Pointer(&c))
}

// allocate requests MMAP buffers on a queue and maps them.
func (e *Encoder) allocate(t uint32) ([]mapped, error) {
	rb := requestBuffers{Count: uint32(e.o.Buffers), Type: t, Memory: memoryMMAP}
	if err := e.dev.Ioctl(vidiocReqbufs, unsafe.Pointer(&rb)); err != nil {
		return nil, fmt.Errorf("m2m: VIDIOC_REQBUFS %s: %w", typeName(t), err)
	}
	if rb.Count == 0 {
		return nil, fmt.Errorf("m2m: VIDIOC_REQBUFS %s: no buffers", typeName(t))
	}
	bufs := make([]mapped, rb.Count)
	for i := range bufs {
		b := e.bufferStruct(t, i)
		err := e.dev.Ioctl(vidiocQuerybuf, unsafe.Pointer(&b))
		runtime.KeepAlive(e.planes)
		if err != nil {
			return bufs, fmt.Errorf("m2m: VIDIOC_QUERYBUF %s %d: %w", typeName(t), i, err)
		}
		pl := e.planes[0]
		mem, err := e.dev.Mmap(int64(uint32(pl.M)), int(pl.Length))
		if err != nil {
			return bufs, fmt.Errorf("m2m: mmap %s buffer %d: %w", typeName(t), i, err)
		}
		bufs[i].mem = mem
	}
	return bufs, nil
}

// bufferStruct prepares a struct v4l2_buffer pointing at the scratch plane.
func (e *Encoder) bufferStruct(t uint32, index int) buffer {
	e.planes[0] = plane{}
	return buffer{Index: uint32(index), Type: t, Memory: memoryMMAP, Field: fieldNone,
		M: unsafe.Pointer(&e.planes[0]), Length: 1}
}

func (e *Encoder) queue(t uint32, index, used int, ts time.Time) error {
	b := e.bufferStruct(t, index)
	if t == bufTypeOutputMPlane {
		e.planes[0].BytesUsed = uint32(used)
		e.planes[0].Length = uint32(len(e.in[index].mem))
		if !ts.IsZero() {
			us := ts.UnixMicro()
			b.Sec, b.Usec = uintptr(us/1e6), uintptr(us%1e6)
		}
	} else {
		e.planes[0].Length = uint32(len(e.out[index].mem))
	}
	err := e.dev.Ioctl(vidiocQbuf, unsafe.Pointer(&b))
	runtime.KeepAlive(e.planes)
	if err != nil {
		return fmt.Errorf("m2m: VIDIOC_QBUF %s %d: %w", typeName(t), index, err)
	}
	if t == bufTypeOutputMPlane {
		e.in[index].queued = true
	} else {
		e.out[index].queued = true
	}
	return nil
}

// dequeue takes a finished buffer off a queue; ok is false when none is ready.
func (e *Encoder) dequeue(t uint32) (b buffer, pl plane, ok bool, err error) {
	b = e.bufferStruct(t, 0)
	err = e.dev.Ioctl(vidiocDqbuf, unsafe.Pointer(&b))
	runtime.KeepAlive(e.planes)
	if errors.Is(err, syscall.EAGAIN) {
		return b, pl, false, nil
	}
	if err != nil {
		return b, pl, false, fmt.Errorf("m2m: VIDIOC_DQBUF %s: %w", typeName(t), err)
	}
	bufs := e.in
	if t == bufTypeCaptureMPlane {
		bufs = e.out
	}
	if int(b.Index) >= len(bufs) {
		return b, pl, false, fmt.Errorf("m2m: VIDIOC_DQBUF %s: index %d out of range", typeName(t), b.Index)
	}
	bufs[b.Index].queued = false
	return b, e.planes[0], true, nil
}

// Name says which device encodes.
func (e *Encoder) Name() string { return e.name }

// Encode codes one picture; the access unit that comes back is the picture's (the
// encoder has no reordering), or nil when the encoder holds it back.
func (e *Encoder) Encode(f *h264.Frame, forceIDR bool, capture time.Time) ([]byte, error) {
	if f.Width != e.o.Width || f.Height != e.o.Height {
		return nil, fmt.Errorf("m2m: picture %dx%d, encoder configured for %dx%d", f.Width, f.Height, e.o.Width, e.o.Height)
	}
	// Reclaim OUTPUT buffers the encoder has finished with.
	for {
		_, _, ok, err := e.dequeue(bufTypeOutputMPlane)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
	}
	idx := -1
	for i := range e.in {
		if !e.in[i].queued {
			idx = i
			break
		}
	}
	if idx < 0 {
		// Every picture is still inside the encoder: wait for one to come back.
		if err := e.wait(); err != nil {
			return nil, err
		}
		return e.Encode(f, forceIDR, capture)
	}
	e.fill(e.in[idx].mem, f)
	if forceIDR {
		if err := e.setControl(cidForceKeyFrame, 1); err != nil {
			e.log.Debug("force keyframe", "err", err)
		}
	}
	if err := e.queue(bufTypeOutputMPlane, idx, e.inSize, capture); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(e.o.Timeout)
	for {
		au, err := e.collect()
		if err != nil || au != nil {
			return au, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("m2m: no access unit within %v", e.o.Timeout)
		}
		if err := e.wait(); err != nil {
			return nil, err
		}
	}
}

// wait polls until a CAPTURE buffer is ready or an OUTPUT one is done; the caller
// re-checks the queue it needs.
func (e *Encoder) wait() error {
	in, out, err := e.dev.Poll(e.o.Timeout)
	if err != nil {
		return fmt.Errorf("m2m: poll: %w", err)
	}
	if !in && !out {
		return fmt.Errorf("m2m: encoder silent for %v", e.o.Timeout)
	}
	return nil
}

// collect dequeues CAPTURE buffers until one holds a picture, requeueing each.
func (e *Encoder) collect() ([]byte, error) {
	for {
		b, pl, ok, err := e.dequeue(bufTypeCaptureMPlane)
		if err != nil || !ok {
			return nil, err
		}
		mem := e.out[b.Index].mem
		lo, hi := int(pl.DataOffset), int(pl.BytesUsed)
		var au []byte
		if lo <= hi && hi <= len(mem) {
			au, _, ok = e.ps.Filter(mem[lo:hi])
		}
		if err := e.queue(bufTypeCaptureMPlane, int(b.Index), 0, time.Time{}); err != nil {
			return nil, err
		}
		if ok && au != nil {
			return au, nil
		}
		if b.Flags&bufFlagLast != 0 {
			return nil, errors.New("m2m: encoder stopped (last buffer)")
		}
	}
}

// fill copies an I420 picture into an OUTPUT buffer with the driver's stride and rows.
func (e *Encoder) fill(dst []byte, f *h264.Frame) {
	w, h, s := f.Width, f.Height, e.stride
	for y := 0; y < h; y++ {
		copy(dst[y*s:y*s+w], f.Y[y*w:])
	}
	cs, cw := s/2, w/2
	cb := dst[s*e.rows:]
	cr := cb[cs*e.rows/2:]
	for y := 0; y < h/2; y++ {
		copy(cb[y*cs:y*cs+cw], f.Cb[y*cw:])
		copy(cr[y*cs:y*cs+cw], f.Cr[y*cw:])
	}
}

// Close stops both queues, unmaps and frees the buffers and closes the device.
func (e *Encoder) Close() error {
	e.release()
	return e.dev.Close()
}

func (e *Encoder) release() {
	for _, t := range []uint32{bufTypeOutputMPlane, bufTypeCaptureMPlane} {
		e.dev.Ioctl(vidiocStreamoff, unsafe.Pointer(&t))
	}
	for _, bufs := range [][]mapped{e.in, e.out} {
		for _, b := range bufs {
			if b.mem != nil {
				e.dev.Munmap(b.mem)
			}
		}
	}
	for _, t := range []uint32{bufTypeOutputMPlane, bufTypeCaptureMPlane} {
		rb := requestBuffers{Count: 0, Type: t, Memory: memoryMMAP}
		e.dev.Ioctl(vidiocReqbufs, unsafe.Pointer(&rb))
	}
	e.in, e.out = nil, nil
}
