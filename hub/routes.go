package hub

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/web"
)

// routes is the hub's HTTP surface: the signalling socket, the API (api.go, identity.go,
// admin.go, snapshot.go, whipauth.go), /healthz, /metrics and the embedded pages.
func (h *Hub) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /rtc", h.sfu)
	mux.HandleFunc("POST /api/login", h.handleLogin)
	mux.HandleFunc("POST /api/logout", h.authed(h.handleLogout))
	mux.HandleFunc("GET /api/session", h.authed(h.handleSession))
	mux.HandleFunc("POST /api/token", h.authed(h.handleToken))
	mux.HandleFunc("GET /api/config", h.authed(h.handleConfig))
	mux.HandleFunc("GET /api/devices", h.authed(h.handleDevices))
	mux.HandleFunc("POST /api/devices/{id}/cmd", h.authed(h.handleCommand))
	mux.HandleFunc("POST /api/devices/{id}/watch", h.authed(h.handleWatch))
	mux.HandleFunc("POST /api/devices/{id}/unwatch", h.authed(h.handleUnwatch))
	// The snapshot route checks its own credentials: a view channel's token counts (snapshot.go).
	mux.HandleFunc("GET /api/devices/{id}/snapshot.jpg", h.handleSnapshot)
	h.registerWHIP(mux) // WHIP and WHEP (whipauth.go)
	mux.HandleFunc("GET /api/admin/users", h.admin(h.handleUsers))
	mux.HandleFunc("POST /api/admin/users", h.admin(h.handleAddUser))
	mux.HandleFunc("PUT /api/admin/users/{name}", h.admin(h.handleSetUser))
	mux.HandleFunc("DELETE /api/admin/users/{name}", h.admin(h.handleDeleteUser))
	mux.HandleFunc("GET /api/admin/devices", h.admin(h.handleEnrolled))
	mux.HandleFunc("POST /api/admin/devices", h.admin(h.handleEnrol))
	mux.HandleFunc("DELETE /api/admin/devices/{id}", h.admin(h.handleUnenrol))
	mux.HandleFunc("GET /api/admin/keys", h.admin(h.handleKeys))
	mux.HandleFunc("POST /api/admin/keys", h.admin(h.handleAddKey))
	mux.HandleFunc("DELETE /api/admin/keys/{id}", h.admin(h.handleDeleteKey))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /metrics", h.authed(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		if !p.CanMetrics() {
			writeError(w, http.StatusForbidden, "FORBIDDEN", "/metrics needs an admin or a key with the metrics action (or use metricsListen)")
			return
		}
		h.handleMetrics(w, r)
	}))
	mux.Handle("/", web.Handler())
	return mux
}

// writeJSON replies with v as JSON, never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError replies with the API's error object: {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
