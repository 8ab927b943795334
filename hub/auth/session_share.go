package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// SessionShare keeps web sessions where every hub of a cluster finds them (hub/cluster, in
// Redis): a person logged in through one hub is logged in on all, and a logout on one ends the
// session on all. Keys are hashes of session cookies; values are opaque to it.
type SessionShare interface {
	PutSession(ctx context.Context, key string, value []byte, ttl time.Duration) error
	GetSession(ctx context.Context, key string) ([]byte, error) // nil, nil: no such session
	DelSession(ctx context.Context, key string) error
}

// shareTimeout bounds each call to the share; a login or a page request waits no longer.
const shareTimeout = 2 * time.Second

// shared is a session as the share keeps it.
type shared struct {
	User    string    `json:"user"`
	Gen     int       `json:"gen"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
}

// Share makes the sessions live in s as well: New stores each session there, Lookup reads it
// from there (so sessions begun on another hub are found, and ones ended there are gone), End
// deletes it there. The share's answer is authoritative; when it cannot be reached, a session
// this hub made still works here (logged), one made elsewhere does not.
func (ss *Sessions) Share(s SessionShare, log *slog.Logger) {
	ss.mu.Lock()
	ss.share, ss.log = s, log
	ss.mu.Unlock()
}

// put stores a session in the share for SessionIdle (each use renews it).
func (ss *Sessions) put(key string, s *session) {
	ss.mu.Lock()
	share := ss.share
	ss.mu.Unlock()
	if share == nil {
		return
	}
	b, _ := json.Marshal(shared{User: s.user, Gen: s.gen, CSRF: s.csrf, Created: s.created})
	ctx, cancel := context.WithTimeout(context.Background(), shareTimeout)
	defer cancel()
	if err := share.PutSession(ctx, key, b, SessionIdle); err != nil && ss.log != nil {
		ss.log.Warn("web session not shared with the other hubs", "session", s.id, "err", err)
	}
}

// fromShare returns the share's session for key (nil: none), whether the share answered.
func (ss *Sessions) fromShare(key string) (*session, bool) {
	ss.mu.Lock()
	share := ss.share
	ss.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), shareTimeout)
	defer cancel()
	b, err := share.GetSession(ctx, key)
	if err != nil {
		if ss.log != nil {
			ss.log.Warn("web sessions: the other hubs' sessions could not be read", "err", err)
		}
		return nil, false
	}
	if b == nil {
		return nil, true
	}
	var sh shared
	if json.Unmarshal(b, &sh) != nil || sh.User == "" {
		return nil, true
	}
	return &session{user: sh.User, gen: sh.Gen, csrf: sh.CSRF, id: key[:8], created: sh.Created, renewed: time.Now()}, true
}

// dropShared deletes a session from the share.
func (ss *Sessions) dropShared(key string) {
	ss.mu.Lock()
	share := ss.share
	ss.mu.Unlock()
	if share == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shareTimeout)
	defer cancel()
	if err := share.DelSession(ctx, key); err != nil && ss.log != nil {
		ss.log.Warn("web session not ended on the other hubs", "session", key[:8], "err", err)
	}
}
