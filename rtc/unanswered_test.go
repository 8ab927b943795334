package rtc

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/camagent/camagent/internal/deadaddr"
	"github.com/pion/webrtc/v4"
)

// silentAddr accepts TCP connections and never answers the WebSocket handshake.
func silentAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l.Addr().String()
}

func TestUnansweredClassifiesRealDials(t *testing.T) {
	cases := []struct {
		name       string
		addr       string
		unanswered bool
	}{
		{"blackholed listener (SYNs dropped)", deadaddr.Blackhole(t), true},
		{"closed port (refused)", deadaddr.Closed(t), false},
		{"listener that never answers the handshake", silentAddr(t), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, ClientOptions{URL: "http://" + tc.addr, API: webrtc.NewAPI(),
				ConnectTimeout: 300 * time.Millisecond, RequestTimeout: 500 * time.Millisecond})
			if err == nil {
				c.Close()
				t.Fatalf("dial %s succeeded", tc.addr)
			}
			if got := Unanswered(err); got != tc.unanswered {
				t.Fatalf("Unanswered(%v) = %v, want %v", err, got, tc.unanswered)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
	if Unanswered(errors.New("rtc: join: refused")) || Unanswered(nil) {
		t.Fatal("a refusal or no error counted as unanswered")
	}
}
