package m2m

import (
	"fmt"
	"syscall"
	"unsafe"

	"github.com/camagent/camagent/device/v4l2abi/v4l2fake"
)

// fakeEncoder is a driver on a v4l2fake.Node (a Device) that behaves like bcm2835-codec's encoder: it aligns the
// OUTPUT stride to 32 and rows to 16, sends SPS/PPS on their own in the first CAPTURE
// buffer, honours FORCE_KEY_FRAME, and repeats SPS/PPS before IDRs only when
// REPEAT_SEQ_HEADER is set. Its "access units" describe the picture they came from
// (first luma sample, last luma, last Cb, last Cr) so a test can check the copy.
type fakeEncoder struct {
	*v4l2fake.Node
	ctrls    map[uint32]int32
	width    int
	height   int
	stride   int
	rows     int
	bufs     map[uint32][]int64 // offsets by queue type
	queued   map[uint32]map[uint32]bool
	done     []uint32 // finished OUTPUT buffers
	ready    [][]byte // encoded units waiting for a CAPTURE buffer
	frame    int
	streamOn map[uint32]bool
	refuse   map[uint32]bool // controls to refuse
}

func newFake() *fakeEncoder {
	f := &fakeEncoder{Node: v4l2fake.New(nil), ctrls: map[uint32]int32{}, bufs: map[uint32][]int64{},
		queued:   map[uint32]map[uint32]bool{bufTypeOutputMPlane: {}, bufTypeCaptureMPlane: {}},
		streamOn: map[uint32]bool{}, refuse: map[uint32]bool{}}
	f.SetDriver(f)
	return f
}

func (f *fakeEncoder) logf(format string, a ...any) { f.Logf(format, a...) }

// Handle answers the encoder's ioctls (a v4l2fake.Driver).
func (f *fakeEncoder) Handle(_ *v4l2fake.Node, req uintptr, arg unsafe.Pointer) error {
	switch req {
	case vidiocQuerycap:
		c := (*capability)(arg)
		copy(c.Card[:], "bcm2835-codec-encode")
		c.Capabilities = capVideoM2MMPlane | capStreaming | capDeviceCaps
		c.DeviceCaps = capVideoM2MMPlane | capStreaming
		f.logf("QUERYCAP")
	case vidiocSFmt:
		fm := (*format)(arg)
		p := fm.PixMP()
		f.logf("S_FMT %s %s %dx%d", typeName(fm.Type()), fourccString(p.PixelFormat), p.Width, p.Height)
		if fm.Type() == bufTypeOutputMPlane {
			if p.PixelFormat != pixFmtYU12 {
				return syscall.EINVAL
			}
			f.width, f.height = int(p.Width), int(p.Height)
			f.stride = (f.width + 31) &^ 31
			f.rows = (f.height + 15) &^ 15
			p.BytesPerLine[0] = uint32(f.stride)
			p.SizeImage[0] = uint32(f.stride * f.rows * 3 / 2)
		} else {
			p.SizeImage[0] = 256 << 10
		}
		p.NumPlanes = 1
		fm.SetPixMP(p)
	case vidiocSParm:
		sp := (*streamParm)(arg)
		f.logf("S_PARM %s %d/%d", typeName(sp.Type), le32(sp.Parm[8:]), le32(sp.Parm[12:]))
	case vidiocSCtrl:
		c := (*control)(arg)
		if f.refuse[c.ID] {
			f.logf("S_CTRL %#x refused", c.ID)
			return syscall.EINVAL
		}
		f.ctrls[c.ID] = c.Value
		f.logf("S_CTRL %s=%d", ctrlName(c.ID), c.Value)
	case vidiocReqbufs:
		rb := (*requestBuffers)(arg)
		f.logf("REQBUFS %s %d", typeName(rb.Type), rb.Count)
		if rb.Memory != memoryMMAP {
			return syscall.EINVAL
		}
		f.bufs[rb.Type] = nil
		for i := uint32(0); i < rb.Count; i++ {
			f.bufs[rb.Type] = append(f.bufs[rb.Type], int64(rb.Type)<<24|int64(i)<<16)
		}
	case vidiocQuerybuf:
		b := (*buffer)(arg)
		pl, err := f.planeOf(b)
		if err != nil {
			return err
		}
		pl.M = uintptr(f.bufs[b.Type][b.Index])
		pl.Length = uint32(f.size(b.Type))
		f.logf("QUERYBUF %s %d", typeName(b.Type), b.Index)
	case vidiocQbuf:
		b := (*buffer)(arg)
		pl, err := f.planeOf(b)
		if err != nil {
			return err
		}
		if f.queued[b.Type][b.Index] {
			return syscall.EINVAL
		}
		f.queued[b.Type][b.Index] = true
		if b.Type == bufTypeOutputMPlane {
			if int(pl.BytesUsed) != f.size(b.Type) || b.Sec == 0 {
				return fmt.Errorf("fake: OUTPUT buffer with %d bytes (want %d), timestamp %d", pl.BytesUsed, f.size(b.Type), b.Sec)
			}
			f.logf("QBUF OUTPUT %d", b.Index)
			f.encode(f.Mem(f.bufs[b.Type][b.Index]))
			delete(f.queued[b.Type], b.Index)
			f.done = append(f.done, b.Index)
		} else if f.streamOn[b.Type] {
			f.logf("QBUF CAPTURE %d", b.Index)
		} else {
			f.logf("QBUF CAPTURE %d (before streaming)", b.Index)
		}
	case vidiocDqbuf:
		b := (*buffer)(arg)
		pl, err := f.planeOf(b)
		if err != nil {
			return err
		}
		if b.Type == bufTypeOutputMPlane {
			if len(f.done) == 0 {
				return syscall.EAGAIN
			}
			b.Index, f.done = f.done[0], f.done[1:]
			return nil
		}
		if len(f.ready) == 0 {
			return syscall.EAGAIN
		}
		for i := range f.bufs[b.Type] {
			if f.queued[b.Type][uint32(i)] {
				delete(f.queued[b.Type], uint32(i))
				m := f.Mem(f.bufs[b.Type][i])
				unit := f.ready[0]
				f.ready = f.ready[1:]
				copy(m[16:], unit) // a data offset, as some drivers use
				b.Index, pl.DataOffset, pl.BytesUsed = uint32(i), 16, uint32(16+len(unit))
				return nil
			}
		}
		return syscall.EAGAIN
	case vidiocStreamon, vidiocStreamoff:
		t := *(*uint32)(arg)
		f.streamOn[t] = req == vidiocStreamon
		f.logf("%s %s", map[bool]string{true: "STREAMON", false: "STREAMOFF"}[req == vidiocStreamon], typeName(t))
	default:
		return syscall.ENOTTY
	}
	return nil
}

func (f *fakeEncoder) planeOf(b *buffer) (*plane, error) {
	if b.Memory != memoryMMAP || b.Length != 1 || b.M == nil {
		return nil, fmt.Errorf("fake: buffer without one plane (memory %d, length %d)", b.Memory, b.Length)
	}
	if int(b.Index) >= len(f.bufs[b.Type]) {
		return nil, syscall.EINVAL
	}
	return (*plane)(b.M), nil
}

func (f *fakeEncoder) size(t uint32) int {
	if t == bufTypeOutputMPlane {
		return f.stride * f.rows * 3 / 2
	}
	return 256 << 10
}

// encode makes the unit for one picture.
func (f *fakeEncoder) encode(pic []byte) {
	sps, pps := []byte{0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f}, []byte{0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80}
	last := (f.height-1)*f.stride + f.width - 1
	cb := f.stride * f.rows
	cr := cb + f.stride/2*f.rows/2
	clast := (f.height/2-1)*f.stride/2 + f.width/2 - 1
	desc := []byte{pic[0], pic[last], pic[cb+clast], pic[cr+clast]}
	idr := f.frame == 0 || f.ctrls[cidForceKeyFrame] == 1 || f.frame%int(max(1, f.ctrls[cidH264IPeriod])) == 0
	delete(f.ctrls, cidForceKeyFrame)
	if f.frame == 0 {
		f.ready = append(f.ready, append(append([]byte{}, sps...), pps...))
	}
	var unit []byte
	if idr {
		if f.ctrls[cidRepeatSeqHeader] == 1 && f.frame > 0 {
			unit = append(append(unit, sps...), pps...)
		}
		unit = append(append(unit, 0, 0, 0, 1, 0x65), desc...)
	} else {
		unit = append(append(unit, 0, 0, 0, 1, 0x41), desc...)
	}
	f.ready = append(f.ready, unit)
	f.frame++
}

// Ready: an encoded unit waits for a CAPTURE buffer, or an OUTPUT buffer is done.
func (f *fakeEncoder) Ready(*v4l2fake.Node) (bool, bool) { return len(f.ready) > 0, len(f.done) > 0 }

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func fourccString(c uint32) string {
	return string([]byte{byte(c), byte(c >> 8), byte(c >> 16), byte(c >> 24)})
}

func ctrlName(id uint32) string {
	return map[uint32]string{cidBitrate: "bitrate", cidRepeatSeqHeader: "repeat_seq_header", cidForceKeyFrame: "force_key_frame",
		cidH264IPeriod: "i_period", cidH264Level: "level", cidH264Profile: "profile"}[id]
}
