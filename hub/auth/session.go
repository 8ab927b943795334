package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"
)

// Session lifetimes: a session ends after SessionIdle without use, and SessionMax after login.
const (
	SessionIdle = 12 * time.Hour
	SessionMax  = 7 * 24 * time.Hour
	// MaxSessions bounds the sessions kept (the oldest goes first).
	MaxSessions = 10000
)

// Sessions are the web sessions of logged-in people, in memory (a hub restart logs everyone
// out), and in a cluster's share too (Share). The cookie carries a random 256-bit value; only its hash is kept, as the map key.
type Sessions struct {
	store *Store
	now   func() time.Time

	mu sync.Mutex
	m  map[string]*session
	// share, when set, holds the sessions of every hub (session_share.go).
	share SessionShare
	log   *slog.Logger
}

type session struct {
	user    string
	gen     int
	csrf    string
	id      string // short id for logs: the first 8 hex of the hash
	created time.Time
	last    time.Time
	renewed time.Time // when the share's copy was last stored
}

// NewSessions returns an empty session table over store.
func NewSessions(store *Store) *Sessions {
	return &Sessions{store: store, now: time.Now, m: map[string]*session{}}
}

func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// New starts a session for a person who just logged in; it returns the cookie value and the
// session's CSRF token.
func (ss *Sessions) New(p *Principal) (cookie, csrf string) {
	cookie, csrf = randomText(32), randomText(24)
	key := sessionKey(cookie)
	now := ss.now()
	ss.mu.Lock()
	ss.expire(now)
	if len(ss.m) >= MaxSessions {
		var oldest string
		for k, s := range ss.m {
			if oldest == "" || s.last.Before(ss.m[oldest].last) {
				oldest = k
			}
		}
		delete(ss.m, oldest)
	}
	s := &session{user: p.Name, gen: p.generation(), csrf: csrf, id: key[:8], created: now, last: now, renewed: now}
	ss.m[key] = s
	copied := *s
	ss.mu.Unlock()
	ss.put(key, &copied)
	return cookie, csrf
}

func (ss *Sessions) expire(now time.Time) {
	for k, s := range ss.m {
		if now.Sub(s.last) > SessionIdle || now.Sub(s.created) > SessionMax {
			delete(ss.m, k)
		}
	}
}

// Lookup returns the person of a session cookie and the session's CSRF token, or false when
// the session is unknown, expired, or its user was deleted or changed password.
func (ss *Sessions) Lookup(cookie string) (*Principal, string, bool) {
	if cookie == "" || len(cookie) > 128 {
		return nil, "", false
	}
	key := sessionKey(cookie)
	now := ss.now()
	ss.mu.Lock()
	share := ss.share
	ss.mu.Unlock()
	// With a share, it decides: a session begun on another hub is found there, one ended on
	// another hub is gone from it. Unreachable, this hub's own sessions go on.
	var found *session
	answered := false
	if share != nil {
		found, answered = ss.fromShare(key)
	}
	ss.mu.Lock()
	s := ss.m[key]
	if answered {
		switch {
		case found == nil:
			delete(ss.m, key)
			s = nil
		case s == nil:
			s = found
			ss.m[key] = s
		}
		if s != nil {
			s.last = now // the share's expiry is the idle limit: it says the session is in use
		}
	}
	if s != nil && (now.Sub(s.last) > SessionIdle || now.Sub(s.created) > SessionMax) {
		delete(ss.m, key)
		s = nil
	}
	renew := s != nil && answered && now.Sub(s.renewed) > time.Minute // the share's idle expiry
	var user, csrf, id string
	var gen int
	if s != nil {
		s.last = now
		if renew {
			s.renewed = now
		}
		user, csrf, id, gen = s.user, s.csrf, s.id, s.gen
	}
	var copied session
	if renew {
		copied = *s
	}
	ss.mu.Unlock()
	if s == nil {
		return nil, "", false
	}
	if renew {
		ss.put(key, &copied)
	}
	p, ok := ss.store.person(user, gen, "session-"+id)
	if !ok {
		ss.End(cookie)
		return nil, "", false
	}
	return p, csrf, true
}

// End deletes a session (logout).
func (ss *Sessions) End(cookie string) {
	key := sessionKey(cookie)
	ss.mu.Lock()
	delete(ss.m, key)
	ss.mu.Unlock()
	ss.dropShared(key)
}

// Len is the number of live sessions.
func (ss *Sessions) Len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}
