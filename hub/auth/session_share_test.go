package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// mapShare is a SessionShare in memory, as two hubs would see one Redis.
type mapShare struct {
	mu   sync.Mutex
	m    map[string][]byte
	down bool
}

func (s *mapShare) PutSession(_ context.Context, key string, v []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("down")
	}
	s.m[key] = append([]byte(nil), v...)
	return nil
}

func (s *mapShare) GetSession(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errors.New("down")
	}
	return s.m[key], nil
}

func (s *mapShare) DelSession(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("down")
	}
	delete(s.m, key)
	return nil
}

// TestSessionsShared: two hubs' session tables over one share: a login on one is a login on
// the other, a logout on either ends it on both, the share never sees the cookie, a forged
// cookie finds nothing, and with the share unreachable a hub's own sessions go on while the
// other's do not.
func TestSessionsShared(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AddUser("ann", "correct horse battery", false, nil); err != nil {
		t.Fatal(err)
	}
	p, err := store.Login("ann", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	share := &mapShare{m: map[string][]byte{}}
	a, b := NewSessions(store), NewSessions(store)
	a.Share(share, nil)
	b.Share(share, nil)

	cookie, csrf := a.New(p)
	for k, v := range share.m {
		if k == cookie || string(v) == cookie {
			t.Fatal("the share holds the cookie itself")
		}
	}
	got, gotCSRF, ok := b.Lookup(cookie)
	if !ok || got.Name != "ann" || gotCSRF != csrf {
		t.Fatalf("hub b: %v %q %v, want ann's session with its CSRF token", got, gotCSRF, ok)
	}
	if _, _, ok := b.Lookup(cookie + "x"); ok {
		t.Fatal("a cookie no hub issued was accepted")
	}
	b.End(cookie) // logout through hub b
	if _, _, ok := a.Lookup(cookie); ok {
		t.Fatal("hub a still knows a session ended on hub b")
	}

	mine, _ := a.New(p)
	theirs, _ := b.New(p)
	share.down = true
	if _, _, ok := a.Lookup(mine); !ok {
		t.Fatal("share down: hub a lost its own session")
	}
	if _, _, ok := a.Lookup(theirs); ok {
		t.Fatal("share down: hub a accepted a session it cannot check")
	}
}
