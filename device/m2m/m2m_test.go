package m2m

import (
	"bytes"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/v4l2abi/v4l2fake"
)

func picture(w, h int, seed byte) *h264.Frame {
	f := h264.NewFrame(w, h)
	for i := range f.Y {
		f.Y[i] = seed + byte(i)
	}
	for i := range f.Cb {
		f.Cb[i], f.Cr[i] = seed+byte(2*i), seed+byte(3*i)
	}
	return f
}

func nalTypes(au []byte) []byte {
	var ts []byte
	for _, n := range h264.SplitAnnexB(au) {
		ts = append(ts, h264.NALType(n))
	}
	return ts
}

func TestEncoderSequence(t *testing.T) {
	const w, h = 100, 50 // neither a multiple of 32 nor of 16: stride and rows are padded
	dev := newFake()
	e, err := New(dev, Options{Width: w, Height: h, FPS: 25, Bitrate: 1_000_000, GOP: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	setup := strings.Join(dev.Log(), "\n")
	want := []string{
		"QUERYCAP",
		"S_FMT CAPTURE H264 100x50",
		"S_FMT OUTPUT YU12 100x50",
		"S_PARM OUTPUT 1/25",
		"S_CTRL bitrate=1000000",
		"S_CTRL i_period=5",
		"S_CTRL profile=1",
		"S_CTRL level=8",
		"S_CTRL repeat_seq_header=1",
		"REQBUFS OUTPUT 3", "QUERYBUF OUTPUT 0", "QUERYBUF OUTPUT 2",
		"REQBUFS CAPTURE 3", "QUERYBUF CAPTURE 2",
		"QBUF CAPTURE 0 (before streaming)", "QBUF CAPTURE 2 (before streaming)",
		"STREAMON OUTPUT", "STREAMON CAPTURE",
	}
	pos := 0
	for _, step := range want {
		i := strings.Index(setup[pos:], step)
		if i < 0 {
			t.Fatalf("setup lacks %q after position %d; log:\n%s", step, pos, setup)
		}
		pos += i + len(step)
	}
	if e.Name() != "hardware M2M (bcm2835-codec-encode)" {
		t.Errorf("name %q", e.Name())
	}

	for i := 0; i < 12; i++ {
		pic := picture(w, h, byte(i*10))
		au, err := e.Encode(pic, i == 7, time.Now())
		if err != nil {
			t.Fatalf("picture %d: %v", i, err)
		}
		key := i%5 == 0 || i == 7
		types := nalTypes(au)
		if key && !bytes.Equal(types, []byte{7, 8, 5}) || !key && !bytes.Equal(types, []byte{1}) {
			t.Fatalf("picture %d: NAL types %v (keyframe %v)", i, types, key)
		}
		// The unit describes the picture the encoder read: the copy honoured the stride,
		// the padded rows and the plane order.
		nals := h264.SplitAnnexB(au)
		desc := nals[len(nals)-1][1:]
		wantDesc := []byte{pic.Y[0], pic.Y[w*h-1], pic.Cb[len(pic.Cb)-1], pic.Cr[len(pic.Cr)-1]}
		if !bytes.Equal(desc, wantDesc) {
			t.Fatalf("picture %d: encoder saw %v, want %v", i, desc, wantDesc)
		}
	}
	if _, err := e.Encode(picture(64, 64, 0), false, time.Now()); err == nil {
		t.Error("a picture of another size was accepted")
	}
	dev.ResetLog()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	teardown := strings.Join(dev.Log(), ",")
	if teardown != "STREAMOFF OUTPUT,STREAMOFF CAPTURE,REQBUFS OUTPUT 0,REQBUFS CAPTURE 0,close" || dev.Mapped() != 0 {
		t.Errorf("teardown %s, %d buffers still mapped", teardown, dev.Mapped())
	}
}

// A driver that refuses REPEAT_SEQ_HEADER (and sends SPS/PPS only once) still yields
// IDRs with SPS and PPS in front.
func TestEncoderWithoutRepeatedHeaders(t *testing.T) {
	dev := newFake()
	dev.refuse[cidRepeatSeqHeader] = true
	dev.refuse[cidH264Level] = true
	e, err := New(dev, Options{Width: 64, Height: 48, FPS: 30, GOP: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for i := 0; i < 4; i++ {
		au, err := e.Encode(picture(64, 48, 1), i == 2, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := nalTypes(au); (i == 0 || i == 2) != bytes.Equal(got, []byte{7, 8, 5}) {
			t.Fatalf("picture %d: NAL types %v", i, got)
		}
	}
}

func TestNotAnEncoder(t *testing.T) {
	dev := newFake()
	if _, err := New(dev, Options{Width: 63, Height: 48}); err == nil {
		t.Error("odd width accepted")
	}
	if got := levelFor(1280, 720, 30); got != level31 {
		t.Errorf("level for 720p30: %d", got)
	}
	if got := levelFor(1920, 1080, 30); got != level40 {
		t.Errorf("level for 1080p30: %d", got)
	}
}

// TestEncoderDeviceGone: an encoder whose device disappears mid-stream (ENODEV, poll
// errors) fails Encode with an error that says so, at once, and Close still releases every
// buffer.
func TestEncoderDeviceGone(t *testing.T) {
	dev := newFake()
	e, err := New(dev, Options{Width: 64, Height: 48, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := e.Encode(picture(64, 48, byte(i)), false, time.Now()); err != nil {
			t.Fatalf("picture %d: %v", i, err)
		}
	}
	dev.Unplug()
	for i := range 2 {
		_, err := e.Encode(picture(64, 48, 9), false, time.Now())
		if !errors.Is(err, syscall.ENODEV) && !errors.Is(err, v4l2fake.ErrGone) {
			t.Fatalf("encode %d after the unplug: %v, want ENODEV or a poll error", i, err)
		}
	}
	e.Close()
	if n := dev.Mapped(); n != 0 || !dev.Closed() {
		t.Errorf("after Close: %d buffers still mapped, node closed %v", n, dev.Closed())
	}
}
