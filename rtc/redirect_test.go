package rtc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/camagent/camagent/internal/deadaddr"
	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

func TestCheckRedirect(t *testing.T) {
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"https://hub1.example", "https://hub2.example:8443", true},
		{"wss://hub1.example/rtc", "wss://hub2.example/rtc", true},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8081", true},
		{"ws://127.0.0.1:8080/rtc", "https://hub2.example", true},
		{"https://hub1.example", "http://hub2.example", false}, // leaves TLS
		{"wss://hub1.example/rtc", "ws://127.0.0.1:8081/rtc", false},
		{"https://hub1.example", "https://user:pw@hub2.example", false},
		{"https://hub1.example", "file:///etc/passwd", false},
		{"https://hub1.example", "javascript:alert(1)", false},
		{"https://hub1.example", "//hub2.example", false},
		{"https://hub1.example", "", false},
	} {
		_, err := CheckRedirect(c.from, c.to)
		if (err == nil) != c.ok {
			t.Errorf("CheckRedirect(%q, %q): %v, want ok=%v", c.from, c.to, err, c.ok)
		}
	}
}

// redirectingHub answers every join with REDIRECT to target.
func redirectingHub(t *testing.T, target string) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			var m Message
			if err := c.ReadJSON(&m); err != nil {
				return
			}
			if m.Type == TypeJoin {
				c.WriteJSON(&Message{Type: TypeReply, ID: m.ID, Error: &Error{Code: CodeRedirect, Message: "elsewhere", URL: target}})
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDialJoinHolderUnreachable: a join redirected to a hub that cannot be dialled fails with
// ErrHolderUnreachable (the entry hub answered; the holder is dead); a hub that cannot be
// dialled at all is not that.
func TestDialJoinHolderUnreachable(t *testing.T) {
	dead := "http://" + deadaddr.Closed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := ClientOptions{URL: redirectingHub(t, dead), API: webrtc.NewAPI(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	_, _, err := DialJoin(ctx, o, "demo", "porch", 7, "token")
	if !errors.Is(err, ErrHolderUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("redirected to a closed port: %v, want ErrHolderUnreachable wrapping the refused dial", err)
	}
	o.URL = dead
	if _, _, err := DialJoin(ctx, o, "demo", "porch", 7, "token"); err == nil || errors.Is(err, ErrHolderUnreachable) {
		t.Fatalf("entry hub itself closed: %v, want a plain dial error", err)
	}
}
