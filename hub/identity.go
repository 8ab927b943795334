package hub

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/hub/auth"
)

// sessionCookie holds a logged-in person's session.
const sessionCookie = "camhub_session"

// csrfHeader carries the session's CSRF token on state-changing requests.
const csrfHeader = "X-CSRF-Token"

// apiError is an HTTP error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) write(w http.ResponseWriter) { writeError(w, e.status, e.code, e.message) }

var errUnauthorized = &apiError{http.StatusUnauthorized, "UNAUTHORIZED",
	"log in, or present a device credential or API key as Authorization: Bearer"}

// principal authenticates a request: a bearer credential, a session cookie (with its CSRF
// token on state-changing requests), or demo mode's loopback trust.
func (h *Hub) principal(r *http.Request) (*auth.Principal, *apiError) {
	if a := r.Header.Get("Authorization"); a != "" {
		text, ok := strings.CutPrefix(a, "Bearer ")
		if !ok {
			h.noise("auth", r, "why", "Authorization is not Bearer")
			return nil, &apiError{http.StatusUnauthorized, "UNAUTHORIZED", "Authorization must be Bearer <credential>"}
		}
		p, err := h.store.Bearer(strings.TrimSpace(text))
		if err != nil {
			h.noise("auth", r, "why", err.Error(), "keyId", auth.KeyIDOf(strings.TrimSpace(text)))
			return nil, &apiError{http.StatusUnauthorized, "UNAUTHORIZED", "unknown, revoked or malformed credential"}
		}
		return p, nil
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		p, csrf, ok := h.sessions.Lookup(c.Value)
		if !ok {
			return nil, &apiError{http.StatusUnauthorized, "SESSION_ENDED", "the session has ended: log in again"}
		}
		if stateChanging(r) && !isUpgrade(r) {
			got := r.Header.Get(csrfHeader)
			if subtle.ConstantTimeCompare([]byte(got), []byte(csrf)) != 1 {
				h.noise("csrf", r, "principal", p.String())
				return nil, &apiError{http.StatusForbidden, "CSRF", "missing or wrong " + csrfHeader + " header"}
			}
		}
		return p, nil
	}
	if h.demoTrusted(r) {
		return auth.Demo(), nil
	}
	return nil, errUnauthorized
}

// authed wraps a handler that needs a principal.
func (h *Hub) authed(f func(w http.ResponseWriter, r *http.Request, p *auth.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, e := h.principal(r)
		if e != nil {
			if e == errUnauthorized {
				h.noise("unauthenticated", r)
			}
			e.write(w)
			return
		}
		f(w, r, p)
	}
}

// admin wraps a handler only admins may use.
func (h *Hub) admin(f func(w http.ResponseWriter, r *http.Request, p *auth.Principal)) http.HandlerFunc {
	return h.authed(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if !p.Admin() {
			h.noise("forbidden", r, "principal", p.String())
			writeError(w, http.StatusForbidden, "FORBIDDEN", "only admins manage users, devices and keys")
			return
		}
		f(w, r, p)
	})
}

// loginLimiter refuses logins after too many failures: loginFailures for one name from one
// address, or five times as many from one address, within loginWindow block further attempts
// until the window has passed.
type loginLimiter struct {
	mu    sync.Mutex
	fails map[string][]time.Time
}

const (
	loginFailures = 10
	loginWindow   = 5 * time.Minute
)

func (l *loginLimiter) blocked(keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, k := range keys {
		recent := l.fails[k][:0]
		for _, t := range l.fails[k] {
			if now.Sub(t) < loginWindow {
				recent = append(recent, t)
			}
		}
		l.fails[k] = recent
		limit := loginFailures
		if strings.HasPrefix(k, "addr:") {
			limit = 5 * loginFailures
		}
		if len(recent) >= limit {
			return true
		}
	}
	return false
}

func (l *loginLimiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 100000 { // bounded: forget everything rather than grow
		l.fails = map[string][]time.Time{}
	}
	for _, k := range keys {
		l.fails[k] = append(l.fails[k], time.Now())
	}
}

func (h *Hub) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req, 4096); err != nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "body must be JSON {user, password}: "+err.Error())
		return
	}
	addr := h.clientAddr(r)
	// Per name from one address, and per address over all names (password spraying); not per
	// name alone, or anyone could lock a person out from anywhere.
	keys := []string{"user:" + addr + "/" + strings.ToLower(req.User), "addr:" + addr}
	if h.logins.blocked(keys...) {
		h.noise("login-rate", r, "user", quoteTrunc(req.User))
		writeError(w, http.StatusTooManyRequests, "RATE_LIMITED", "too many failed logins: wait a few minutes")
		return
	}
	p, err := h.store.Login(req.User, req.Password)
	if errors.Is(err, auth.ErrNoUsers) {
		writeError(w, http.StatusUnauthorized, "NO_USERS", "this hub has no users yet: run `camhub user add admin --admin` on the hub machine")
		return
	}
	if err != nil {
		h.logins.fail(keys...)
		h.noise("login", r, "user", quoteTrunc(req.User))
		writeError(w, http.StatusUnauthorized, "LOGIN_FAILED", "wrong user name or password")
		return
	}
	cookie, csrf := h.sessions.New(p)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: cookie, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil || h.fromTrustedProxy(r), SameSite: http.SameSiteStrictMode, MaxAge: int(auth.SessionMax.Seconds())})
	h.log.Info("login", "component", "auth", "user", p.Name, "remote", addr)
	writeJSON(w, http.StatusOK, map[string]any{"user": p.Name, "admin": p.Admin(), "csrf": csrf})
}

func (h *Hub) handleLogout(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		h.sessions.End(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	h.log.Info("logout", "component", "auth", "principal", p.String())
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) handleSession(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	out := map[string]any{"user": p.Name, "kind": p.Kind, "admin": p.Admin(), "demo": h.cfg.Demo}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if _, csrf, ok := h.sessions.Lookup(c.Value); ok {
			out["csrf"] = csrf
		}
	}
	perms := map[string][]string{}
	if p.Admin() {
		perms[auth.AllDevices] = []string{auth.PermView, auth.PermTalk, auth.PermCommand, auth.PermAdmin}
	} else {
		for _, d := range h.dir.Devices() {
			if ps := p.Permissions(d.ID); len(ps) > 0 {
				perms[d.ID] = ps
			}
		}
	}
	out["permissions"] = perms
	writeJSON(w, http.StatusOK, out)
}

// decodeJSON reads a JSON body of at most limit bytes, refusing unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
