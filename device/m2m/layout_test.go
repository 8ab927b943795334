package m2m

import (
	"testing"
	"unsafe"
)

// The structs must match the kernel's layouts on 64-bit and 32-bit systems
// (`GOARCH=386 go test` and `GOARCH=arm go test -exec qemu-arm-static` run the 32-bit case).
func TestABILayout(t *testing.T) {
	is64 := unsafe.Sizeof(uintptr(0)) == 8
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
		{"v4l2_capability", unsafe.Sizeof(capability{}), 104},
		{"v4l2_requestbuffers", unsafe.Sizeof(requestBuffers{}), 20},
		{"v4l2_control", unsafe.Sizeof(control{}), 8},
		{"v4l2_streamparm", unsafe.Sizeof(streamParm{}), 204},
		{"v4l2_plane", unsafe.Sizeof(plane{}), pick(64, 60)},
		{"v4l2_buffer", unsafe.Sizeof(buffer{}), pick(88, 68)},
		{"v4l2_buffer.m", unsafe.Offsetof(buffer{}.M), pick(64, 52)},
		{"v4l2_buffer.length", unsafe.Offsetof(buffer{}.Length), pick(72, 56)},
		{"v4l2_buffer.timestamp", unsafe.Offsetof(buffer{}.Sec), pick(24, 20)},
		{"v4l2_plane.data_offset", unsafe.Offsetof(plane{}.DataOffset), pick(16, 12)},
		{"v4l2_format", formatSize, pick(208, 204)},
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
		{"VIDIOC_QUERYCAP", vidiocQuerycap, 0x80685600},
		{"VIDIOC_S_CTRL", vidiocSCtrl, 0xc008561c},
		{"VIDIOC_STREAMON", vidiocStreamon, 0x40045612},
		{"VIDIOC_S_FMT", vidiocSFmt, pick(0xc0d05605, 0xc0cc5605)},
		{"VIDIOC_QBUF", vidiocQbuf, pick(0xc058560f, 0xc044560f)},
		{"VIDIOC_DQBUF", vidiocDqbuf, pick(0xc0585611, 0xc0445611)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}
