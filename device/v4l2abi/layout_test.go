package v4l2abi

import (
	"testing"
	"unsafe"
)

// The structs must match the kernel's layouts on 64-bit and 32-bit systems: `make test`
// runs this package also as GOARCH=386 and as GOARCH=arm under qemu-arm-static (test-abi32).
func TestABILayout(t *testing.T) {
	is64 := unsafe.Sizeof(uintptr(0)) == 8
	t.Logf("GOARCH word size %d bytes", unsafe.Sizeof(uintptr(0)))
	pick := func(a, b uintptr) uintptr {
		if is64 {
			return a
		}
		return b
	}
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"v4l2_capability", unsafe.Sizeof(Capability{}), 104},
		{"v4l2_requestbuffers", unsafe.Sizeof(RequestBuffers{}), 20},
		{"v4l2_control", unsafe.Sizeof(Control{}), 8},
		{"v4l2_streamparm", unsafe.Sizeof(StreamParm{}), 204},
		{"v4l2_plane", unsafe.Sizeof(Plane{}), pick(64, 60)},
		{"v4l2_buffer", unsafe.Sizeof(Buffer{}), pick(88, 68)},
		{"v4l2_buffer.m", unsafe.Offsetof(Buffer{}.M), pick(64, 52)},
		{"v4l2_buffer.length", unsafe.Offsetof(Buffer{}.Length), pick(72, 56)},
		{"v4l2_buffer.timestamp", unsafe.Offsetof(Buffer{}.Sec), pick(24, 20)},
		{"v4l2_plane.data_offset", unsafe.Offsetof(Plane{}.DataOffset), pick(16, 12)},
		{"v4l2_format", FormatSize, pick(208, 204)},
		{"v4l2_format.fmt", formatUnion, pick(8, 4)},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
	// Request numbers as the kernel headers define them (these differ by word size).
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"VIDIOC_QUERYCAP", VidiocQuerycap, 0x80685600},
		{"VIDIOC_S_CTRL", VidiocSCtrl, 0xc008561c},
		{"VIDIOC_STREAMON", VidiocStreamon, 0x40045612},
		{"VIDIOC_STREAMOFF", VidiocStreamoff, 0x40045613},
		{"VIDIOC_REQBUFS", VidiocReqbufs, 0xc0145608},
		{"VIDIOC_S_PARM", VidiocSParm, 0xc0cc5616},
		{"VIDIOC_G_FMT", VidiocGFmt, pick(0xc0d05604, 0xc0cc5604)},
		{"VIDIOC_S_FMT", VidiocSFmt, pick(0xc0d05605, 0xc0cc5605)},
		{"VIDIOC_QUERYBUF", VidiocQuerybuf, pick(0xc0585609, 0xc0445609)},
		{"VIDIOC_QBUF", VidiocQbuf, pick(0xc058560f, 0xc044560f)},
		{"VIDIOC_DQBUF", VidiocDqbuf, pick(0xc0585611, 0xc0445611)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// TestFormatUnion: the union members land at the kernel's offsets, whatever the word size.
func TestFormatUnion(t *testing.T) {
	var f Format
	f.SetType(BufTypeOutputMPlane)
	p := PixMP{Width: 1280, Height: 720, PixelFormat: PixFmtYU12, Field: FieldNone, NumPlanes: 1}
	p.SizeImage[0], p.BytesPerLine[0] = 1382400, 1280
	f.SetPixMP(p)
	if f.Type() != BufTypeOutputMPlane || f.PixMP() != p {
		t.Fatalf("read back type %d %+v, want %d %+v", f.Type(), f.PixMP(), BufTypeOutputMPlane, p)
	}
	u := unsafe.Sizeof(uintptr(0))
	if f[u] != 0x00 || f[u+1] != 0x05 || f[u+180] != 1 { // 1280 little-endian, num_planes
		t.Errorf("union bytes at %d: % x, num_planes at %d: %d", u, f[u:u+4], u+180, f[u+180])
	}
	if got := f.Pix(); got.Width != 1280 || got.Height != 720 || got.PixelFormat != PixFmtYU12 {
		t.Errorf("Pix() = %+v", got)
	}
	if RequestName(VidiocDqbuf) != "VIDIOC_DQBUF" || RequestName(1) != "ioctl?" {
		t.Errorf("RequestName: %q %q", RequestName(VidiocDqbuf), RequestName(1))
	}
}
