package rtc

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pion/webrtc/v4"
)

// syncBuffer is a bytes.Buffer for a handler that pion's goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPionLogs: pion's lines reach the program's logger as component=pion with their scope,
// its chatter only at debug, its errors as errors.
func TestPionLogs(t *testing.T) {
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newPionLoggers(log)
	l := f.NewLogger("ice")
	l.Warnf("Failed to ping without candidate pairs (%d)", 3)
	l.Errorf("cannot bind %s", "udp")
	l.Tracef("too fine %d", 1)
	got := out.String()
	for _, want := range []string{
		`level=DEBUG msg="Failed to ping without candidate pairs (3)" component=pion scope=ice`,
		`level=ERROR msg="cannot bind udp" component=pion scope=ice`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "too fine") {
		t.Errorf("a trace line came out at debug:\n%s", got)
	}

	// Through NewAPI: a peer connection's own state lines come out under component=pion.
	var pcOut syncBuffer
	api, err := NewAPI(APIOptions{LoopbackOnly: true,
		Logger: slog.New(slog.NewTextHandler(&pcOut, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	if s := pcOut.String(); !strings.Contains(s, "component=pion scope=pc") {
		t.Errorf("the peer connection logged nothing through the program's logger:\n%s", s)
	}

	// At the default level, none of that chatter shows.
	var quiet syncBuffer
	newPionLoggers(slog.New(slog.NewTextHandler(&quiet, nil))).NewLogger("pc").Warn("stream is already closed")
	if quiet.String() != "" {
		t.Errorf("pion's warning chatter shows at info: %s", quiet.String())
	}
}
