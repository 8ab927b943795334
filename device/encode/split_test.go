package encode

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/camagent/camagent/device/h264"
	"github.com/camagent/camagent/device/synth"
)

// stream encodes n pictures of the synthetic camera with an IDR every 10.
func stream(t *testing.T, n int) [][]byte {
	t.Helper()
	enc, err := h264.NewEncoder(128, 96, 30)
	if err != nil {
		t.Fatal(err)
	}
	enc.SetIDRInterval(10)
	f := h264.NewFrame(128, 96)
	var aus [][]byte
	for i := 0; i < n; i++ {
		synth.Render(f, uint64(i), time.Unix(0, 0))
		au, err := enc.Encode(f, false, h264.FrameInfo{Counter: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		aus = append(aus, au)
	}
	return aus
}

func TestSplitterFindsEveryAccessUnit(t *testing.T) {
	aus := stream(t, 25)
	all := bytes.Join(aus, nil)
	for _, chunk := range []int{1, 7, 1000, len(all)} {
		var s Splitter
		var got [][]byte
		rest := all
		r := rand.New(rand.NewPCG(1, uint64(chunk)))
		for len(rest) > 0 {
			n := min(len(rest), 1+r.IntN(chunk))
			got = append(got, s.Write(rest[:n])...)
			rest = rest[n:]
		}
		if last := s.Flush(); last != nil {
			got = append(got, last)
		}
		if len(got) != len(aus) {
			t.Fatalf("chunks ≤%d: %d access units, want %d", chunk, len(got), len(aus))
		}
		for i := range got {
			if !bytes.Equal(got[i], aus[i]) {
				t.Fatalf("chunks ≤%d: access unit %d differs", chunk, i)
			}
		}
	}
}

func FuzzSplitter(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x65, 0x88, 0, 0, 1, 0x41, 0x9a})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Splitter
		n := 0
		for _, au := range s.Write(b) {
			n += len(au)
		}
		s.Flush()
		if n > 2*len(b)+16 {
			t.Fatalf("%d bytes out of %d in", n, len(b))
		}
	})
}
