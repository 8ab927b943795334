package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/directory"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
)

type tokenRequest struct {
	AppID         string `json:"appId"`
	Channel       string `json:"channel"`
	UID           uint32 `json:"uid"`
	Role          string `json:"role"`
	ExpireSeconds int64  `json:"expireSeconds"`
}

// MaxTokenLifetime bounds what the token service mints, on every path (the CLI included).
const MaxTokenLifetime = 24 * time.Hour

// defaultTokenLifetime is a token's lifetime when the request names none.
const defaultTokenLifetime = time.Hour

// audit writes the line every device-affecting request leaves: who, with which credential,
// on which device, what.
func (h *Hub) audit(r *http.Request, p *auth.Principal, device, action string, attrs ...any) {
	h.log.Info("audit", append([]any{"component", "audit", "principal", p.Kind + ":" + p.Name, "credential", p.CredID,
		"device", device, "action", action, "remote", h.clientAddr(r)}, attrs...)...)
}

func (h *Hub) handleToken(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var req tokenRequest
	if err := decodeJSON(w, r, &req, 4096); err != nil {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "body must be JSON {appId, channel, uid, role, expireSeconds}: "+err.Error())
		return
	}
	if req.AppID == "" {
		req.AppID = h.cfg.Apps[0].ID
	}
	cert, ok := h.certs[req.AppID]
	if !ok {
		writeError(w, http.StatusNotFound, rtc.CodeAppUnknown, fmt.Sprintf("unknown App ID %q", req.AppID))
		return
	}
	if !rtc.ValidChannel(req.Channel) {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "channel must be 1-64 printable ASCII characters")
		return
	}
	ttl := time.Duration(req.ExpireSeconds) * time.Second
	if req.ExpireSeconds == 0 {
		ttl = defaultTokenLifetime
		if m := p.MaxTTL(); m > 0 && m < ttl {
			ttl = m
		}
	}
	if ttl <= 0 || ttl > MaxTokenLifetime {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, fmt.Sprintf("expireSeconds must be between 1 and %d", int(MaxTokenLifetime.Seconds())))
		return
	}
	privs, err := token.PrivilegesFor(req.Role)
	if err != nil {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, err.Error())
		return
	}
	publishes := false
	for _, pr := range privs {
		publishes = publishes || pr == token.PrivPublishAudio || pr == token.PrivPublishVideo
	}
	if err := p.MayMint(auth.MintRequest{App: req.AppID, Channel: req.Channel, UID: req.UID, Publishes: publishes, TTL: ttl}); err != nil {
		h.noise("token", r, "principal", p.String(), "why", err.Error())
		writeError(w, http.StatusForbidden, "FORBIDDEN", strings.TrimPrefix(err.Error(), "forbidden: "))
		return
	}
	tok, claims, err := mint(req.AppID, cert, req.Channel, req.UID, privs, ttl)
	if err != nil {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, err.Error())
		return
	}
	h.log.Info("token minted", "component", "token", "principal", p.String(), "app", req.AppID, "channel", req.Channel, "uid", req.UID,
		"role", req.Role, "expires", claims.Expiry().UTC().Format(time.RFC3339), "remote", h.clientAddr(r))
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expiresAt": claims.ExpiresAt})
}

// mint signs a token with exactly privs.
func mint(app, cert, channel string, uid uint32, privs []string, ttl time.Duration) (string, *token.Claims, error) {
	return token.MintPrivileges(app, cert, channel, uid, privs, ttl, time.Now())
}

func (h *Hub) handleConfig(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) {
	writeJSON(w, http.StatusOK, map[string]any{"appId": h.cfg.Apps[0].ID, "demo": h.cfg.Demo})
}

type deviceEntry struct {
	directory.Device
	Permissions []string `json:"permissions"`
}

func (h *Hub) handleDevices(w http.ResponseWriter, _ *http.Request, p *auth.Principal) {
	out := []deviceEntry{}
	for _, d := range h.dir.Devices() {
		if p.Can(d.ID, auth.PermView) || p.CanCommand(d.ID, "status") {
			out = append(out, deviceEntry{Device: d, Permissions: p.Permissions(d.ID)})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// deviceID is the {id} of a device route, checked to be one MQTT topic level.
func deviceID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !auth.ValidName(id) {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "bad device id")
		return "", false
	}
	return id, true
}

// ViewChannel is the channel the hub has a device join for people watching it.
func ViewChannel(id string) string {
	b := []byte("view-" + id)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// command sends a device a command for principal p and writes the answer; it returns the
// device's reply (nil when the answer was an error).
func (h *Hub) command(w http.ResponseWriter, r *http.Request, id string, cmd map[string]any) json.RawMessage {
	reply, err := h.dir.Command(r.Context(), id, cmd, 15*time.Second)
	if errors.Is(err, directory.ErrNoReply) {
		writeError(w, http.StatusGatewayTimeout, "NO_REPLY", "device "+id+" did not reply in 15 s")
		return nil
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, "MQTT", err.Error())
		return nil
	}
	return reply
}

func (h *Hub) handleCommand(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	var cmd map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&cmd); err != nil || cmd == nil {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "body must be a JSON command object")
		return
	}
	action, _ := cmd["action"].(string)
	if !p.CanCommand(id, action) {
		h.noise("forbidden", r, "principal", p.String(), "device", id, "action", quoteTrunc(action))
		writeError(w, http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("%s may not send %q to device %s", p.Kind+" "+p.Name, action, id))
		return
	}
	channel, _ := cmd["channel"].(string)
	h.audit(r, p, id, action, "channel", channel)
	if reply := h.command(w, r, id, cmd); reply != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(reply)
	}
}

// deviceUID is the uid a device joins with: from its enrolment, else from its reported state.
func (h *Hub) deviceUID(id string, reply json.RawMessage) uint32 {
	var rep struct {
		State struct {
			UID uint32 `json:"uid"`
		} `json:"state"`
	}
	if json.Unmarshal(reply, &rep) == nil && rep.State.UID != 0 {
		return rep.State.UID
	}
	if d, ok := h.store.Device(id); ok {
		return d.UID
	}
	for _, d := range h.dir.Devices() {
		if d.ID == id {
			var st struct {
				UID uint32 `json:"uid"`
			}
			json.Unmarshal(d.State, &st)
			return st.UID
		}
	}
	return 0
}

// viewerOwner names a principal for the uids it is given: a person keeps a uid across
// their sessions, a key or device across its uses.
func viewerOwner(p *auth.Principal) string { return p.Kind + ":" + p.Name }

// handleWatch has the device join its view channel (the hub commands it, so watching needs
// only the view permission) and gives the caller a token for that channel: subscribe, and
// publish audio only if they asked to talk and may.
func (h *Hub) handleWatch(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	var req struct {
		Talk bool   `json:"talk"`
		UID  uint32 `json:"uid"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req, 1024); err != nil {
			writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "body must be JSON {talk, uid}: "+err.Error())
			return
		}
	}
	if !p.Can(id, auth.PermView) {
		h.noise("forbidden", r, "principal", p.String(), "device", id, "action", "watch")
		writeError(w, http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("%s may not view device %s", p.Kind+" "+p.Name, id))
		return
	}
	talk := req.Talk && p.Can(id, auth.PermTalk)
	app := h.cfg.Apps[0].ID
	channel := ViewChannel(id)
	ttl := defaultTokenLifetime
	if m := p.MaxTTL(); m > 0 && m < ttl {
		ttl = m
	}
	// The uid asked for is kept only if the hub gave it to this principal before.
	uid, err := h.viewers.issue(viewerOwner(p), id, req.UID, ttl, time.Now())
	if err != nil {
		writeError(w, http.StatusTooManyRequests, "RATE_LIMITED", err.Error())
		return
	}
	if req.UID != 0 && uid != req.UID {
		h.noise("uid", r, "principal", p.String(), "device", id, "asked", req.UID, "given", uid)
	}
	privs := []string{token.PrivJoin, token.PrivSubscribe}
	if talk {
		privs = append(privs, token.PrivPublishAudio)
	}
	tok, claims, err := mint(app, h.certs[app], channel, uid, privs, ttl)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	h.audit(r, p, id, "watch", "channel", channel, "uid", uid, "talk", talk)
	reply := h.command(w, r, id, map[string]any{"action": "join", "channel": channel, "appId": app})
	if reply == nil {
		return
	}
	var rep struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	json.Unmarshal(reply, &rep)
	if !rep.OK {
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": map[string]string{"code": "DEVICE_REFUSED",
			"message": "device " + id + " did not join: " + rep.Error}, "reply": reply})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"appId": app, "channel": channel, "uid": uid, "token": tok,
		"expiresAt": claims.ExpiresAt, "talk": talk, "deviceUid": h.deviceUID(id, reply), "reply": reply})
}

// handleUnwatch sends the device a leave when nobody but the device (and the caller) is left
// in its view channel.
func (h *Hub) handleUnwatch(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	var req struct {
		UID uint32 `json:"uid"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req, 1024); err != nil {
			writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "body must be JSON {uid}: "+err.Error())
			return
		}
	}
	if !p.Can(id, auth.PermView) {
		h.noise("forbidden", r, "principal", p.String(), "device", id, "action", "unwatch")
		writeError(w, http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("%s may not view device %s", p.Kind+" "+p.Name, id))
		return
	}
	// Only a device in its view channel is released: one an admin sent elsewhere stays.
	for _, d := range h.dir.Devices() {
		var st struct {
			Channel string `json:"channel"`
		}
		if d.ID == id && json.Unmarshal(d.State, &st) == nil && st.Channel != ViewChannel(id) {
			writeJSON(w, http.StatusOK, map[string]any{"left": false})
			return
		}
	}
	devUID := h.deviceUID(id, nil)
	mine := req.UID != 0 && h.viewers.owns(viewerOwner(p), id, req.UID, time.Now())
	for _, u := range h.sfu.ChannelUsers(h.cfg.Apps[0].ID, ViewChannel(id)) {
		if u != devUID && !(mine && u == req.UID) {
			writeJSON(w, http.StatusOK, map[string]any{"left": false})
			return
		}
	}
	h.audit(r, p, id, "unwatch")
	reply := h.command(w, r, id, map[string]any{"action": "leave"})
	if reply == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"left": true, "reply": reply})
}
