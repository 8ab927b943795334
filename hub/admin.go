package hub

import (
	"net/http"
	"strings"
	"time"

	"github.com/camagent/camagent/hub/auth"
)

// The admin API: people, devices and keys (docs/security.md). Every change leaves an audit line.

type userJSON struct {
	Name        string              `json:"name"`
	Admin       bool                `json:"admin"`
	Permissions map[string][]string `json:"permissions"`
	Created     time.Time           `json:"created"`
}

func (h *Hub) handleUsers(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) {
	out := []userJSON{}
	for _, u := range h.store.Users() {
		out = append(out, userJSON{Name: u.Name, Admin: u.Admin, Permissions: u.Permissions, Created: u.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

func badRequest(w http.ResponseWriter, err error) {
	writeError(w, http.StatusBadRequest, "BAD_REQUEST", strings.TrimPrefix(err.Error(), "auth: "))
}

func (h *Hub) handleAddUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var req struct {
		Name        string              `json:"name"`
		Password    string              `json:"password"`
		Admin       bool                `json:"admin"`
		Permissions map[string][]string `json:"permissions"`
	}
	if err := decodeJSON(w, r, &req, 64<<10); err != nil {
		badRequest(w, err)
		return
	}
	if err := h.store.AddUser(req.Name, req.Password, req.Admin, req.Permissions); err != nil {
		badRequest(w, err)
		return
	}
	h.audit(r, p, "", "user-add", "user", req.Name, "admin", req.Admin)
	writeJSON(w, http.StatusCreated, map[string]any{"name": req.Name})
}

func (h *Hub) handleSetUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	name := r.PathValue("name")
	var req struct {
		Password    *string             `json:"password"`
		Admin       *bool               `json:"admin"`
		Permissions map[string][]string `json:"permissions"`
	}
	if err := decodeJSON(w, r, &req, 64<<10); err != nil {
		badRequest(w, err)
		return
	}
	ch := auth.UserChange{Password: req.Password, Admin: req.Admin, Permissions: req.Permissions, ReplacePermissions: req.Permissions != nil}
	if err := h.store.SetUser(name, ch); err != nil {
		badRequest(w, err)
		return
	}
	h.audit(r, p, "", "user-set", "user", name)
	writeJSON(w, http.StatusOK, map[string]any{"name": name})
}

func (h *Hub) handleDeleteUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	name := r.PathValue("name")
	if err := h.store.DeleteUser(name); err != nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", strings.TrimPrefix(err.Error(), "auth: "))
		return
	}
	h.audit(r, p, "", "user-delete", "user", name)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) handleEnrolled(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) {
	type dev struct {
		ID      string    `json:"id"`
		UID     uint32    `json:"uid"`
		KeyID   string    `json:"keyId"`
		Created time.Time `json:"created"`
	}
	out := []dev{}
	for _, d := range h.store.Devices() {
		out = append(out, dev{d.ID, d.UID, d.KeyID, d.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) handleEnrol(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var req struct {
		ID  string `json:"id"`
		UID uint32 `json:"uid"`
	}
	if err := decodeJSON(w, r, &req, 4096); err != nil {
		badRequest(w, err)
		return
	}
	cred, d, err := h.store.AddDevice(req.ID, req.UID)
	if err != nil {
		badRequest(w, err)
		return
	}
	h.audit(r, p, d.ID, "device-add", "keyId", d.KeyID, "uid", d.UID)
	writeJSON(w, http.StatusCreated, map[string]any{"id": d.ID, "uid": d.UID, "keyId": d.KeyID, "credential": cred})
}

func (h *Hub) handleUnenrol(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	if err := h.store.DeleteDevice(id); err != nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", strings.TrimPrefix(err.Error(), "auth: "))
		return
	}
	h.audit(r, p, id, "device-delete")
	w.WriteHeader(http.StatusNoContent)
}

type keyJSON struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Devices  []string  `json:"devices"`
	Actions  []string  `json:"actions"`
	Apps     []string  `json:"apps"`
	Channels []string  `json:"channels"`
	MaxTTL   string    `json:"maxTTL"`
	MQTT     bool      `json:"mqtt"`
	Created  time.Time `json:"created"`
}

func (h *Hub) handleKeys(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) {
	out := []keyJSON{}
	for _, k := range h.store.Keys() {
		out = append(out, keyJSON{k.ID, k.Name, k.Devices, k.Actions, k.Apps, k.Channels, time.Duration(k.MaxTTL).String(), k.MQTT, k.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) handleAddKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var req keyJSON
	if err := decodeJSON(w, r, &req, 64<<10); err != nil {
		badRequest(w, err)
		return
	}
	var ttl time.Duration
	if req.MaxTTL != "" {
		d, err := time.ParseDuration(req.MaxTTL)
		if err != nil {
			badRequest(w, err)
			return
		}
		ttl = d
	}
	text, k, err := h.store.AddKey(auth.Key{Name: req.Name, Devices: req.Devices, Actions: req.Actions, Apps: req.Apps,
		Channels: req.Channels, MaxTTL: auth.Duration(ttl), MQTT: req.MQTT})
	if err != nil {
		badRequest(w, err)
		return
	}
	h.audit(r, p, strings.Join(k.Devices, ","), "key-add", "keyId", k.ID, "name", k.Name, "actions", strings.Join(k.Actions, ","))
	writeJSON(w, http.StatusCreated, map[string]any{"id": k.ID, "name": k.Name, "key": text})
}

func (h *Hub) handleDeleteKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	if err := h.store.DeleteKey(id); err != nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", strings.TrimPrefix(err.Error(), "auth: "))
		return
	}
	h.audit(r, p, "", "key-delete", "key", id)
	w.WriteHeader(http.StatusNoContent)
}
