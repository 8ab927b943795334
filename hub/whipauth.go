package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/directory"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/hub/whip"
	"github.com/camagent/camagent/rtc"
)

// registerWHIP adds the WHIP and WHEP routes (hub/whip) to mux, with the hub's trust model:
// Authorization: Bearer with a channel token (checked by the channel service as any join), or
// a credential the hub knows (a scoped API key, a device's own credential; a logged-in
// session or demo mode's loopback trust as for every route), from which the hub mints the
// user's token here.
func (h *Hub) registerWHIP(mux *http.ServeMux) {
	whip.New(whip.Options{SFU: h.sfu, Authorize: h.authorizeWHIP, ClientAddr: h.clientAddr, Logger: h.log}).Register(mux)
}

func (h *Hub) authorizeWHIP(r *http.Request, t whip.Target) (*whip.Grant, error) {
	r = basicKey(r) // go2rtc's WHEP source: the key as a Basic password (basickey.go)
	if text, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && !strings.HasPrefix(strings.TrimSpace(text), "cam_") {
		// A channel token: the channel service checks it (App, channel, uid, expiry, privileges).
		if t.Device != "" {
			h.noise("whep", r, "device", t.Device, "why", "token on the device route")
			return nil, &whip.Error{Status: http.StatusForbidden, Code: "FORBIDDEN", Message: "watching a device needs a credential " +
				"that may view it (an API key); with a token, use /whep/<appId>/" + ViewChannel(t.Device)}
		}
		return &whip.Grant{AppID: t.AppID, Channel: t.Channel, Token: strings.TrimSpace(text)}, nil
	}
	p, e := h.principal(r)
	if e != nil {
		if e == errUnauthorized {
			h.noise("unauthenticated", r)
		}
		return nil, &whip.Error{Status: e.status, Code: e.code, Message: e.message}
	}
	ttl := defaultTokenLifetime
	if m := p.MaxTTL(); m > 0 && m < ttl {
		ttl = m
	}
	if t.Device != "" {
		return h.authorizeDeviceView(r, p, t, ttl)
	}
	cert, ok := h.certs[t.AppID]
	if !ok {
		return nil, &whip.Error{Status: http.StatusNotFound, Code: rtc.CodeAppUnknown, Message: fmt.Sprintf("unknown App ID %q", t.AppID)}
	}
	privs := []string{token.PrivJoin}
	if t.Kind == whip.KindWHEP {
		privs = append(privs, token.PrivSubscribe)
	}
	if t.Kind == whip.KindWHIP || t.Sends[rtc.KindAudio] {
		privs = append(privs, token.PrivPublishAudio)
	}
	if t.Kind == whip.KindWHIP || t.Sends[rtc.KindVideo] {
		privs = append(privs, token.PrivPublishVideo)
	}
	publishes := t.Kind == whip.KindWHIP || len(t.Sends) > 0
	var uid uint32
	if d := p.Device(); d != nil {
		uid = d.UID // a device publishes as itself
	} else {
		uid = h.sfu.FreeUID(t.AppID, t.Channel)
	}
	if err := p.MayMint(auth.MintRequest{App: t.AppID, Channel: t.Channel, UID: uid, Publishes: publishes, TTL: ttl}); err != nil {
		h.noise(t.Kind, r, "principal", p.String(), "why", err.Error())
		return nil, &whip.Error{Status: http.StatusForbidden, Code: "FORBIDDEN", Message: strings.TrimPrefix(err.Error(), "forbidden: ")}
	}
	tok, _, err := mint(t.AppID, cert, t.Channel, uid, privs, ttl)
	if err != nil {
		return nil, &whip.Error{Status: http.StatusBadRequest, Code: rtc.CodeInvalidParams, Message: err.Error()}
	}
	h.log.Info("token minted", "component", "token", "principal", p.String(), "app", t.AppID, "channel", t.Channel, "uid", uid,
		"privileges", strings.Join(privs, ","), "via", t.Kind, "remote", h.clientAddr(r))
	// A device takes over its own uid, as its rejoin would; a uid the hub picked is never taken over.
	return &whip.Grant{AppID: t.AppID, Channel: t.Channel, Token: tok, UID: uid, NoTakeover: p.Device() == nil}, nil
}

// authorizeDeviceView is /whep/devices/<id>: the viewer needs the view permission on the
// device (talk, to be heard), and the hub has the device join its view channel, as /watch.
func (h *Hub) authorizeDeviceView(r *http.Request, p *auth.Principal, t whip.Target, ttl time.Duration) (*whip.Grant, error) {
	id := t.Device
	if !auth.ValidName(id) {
		return nil, &whip.Error{Status: http.StatusBadRequest, Code: rtc.CodeInvalidParams, Message: "bad device id"}
	}
	if !p.Can(id, auth.PermView) {
		h.noise("forbidden", r, "principal", p.String(), "device", id, "action", "whep")
		return nil, &whip.Error{Status: http.StatusForbidden, Code: "FORBIDDEN", Message: fmt.Sprintf("%s may not view device %s", p.Kind+" "+p.Name, id)}
	}
	if t.Sends[rtc.KindVideo] {
		return nil, &whip.Error{Status: http.StatusBadRequest, Code: rtc.CodeInvalidParams, Message: "a device's viewer may send audio (talk), not video: offer video recvonly"}
	}
	talk := t.Sends[rtc.KindAudio] && p.Can(id, auth.PermTalk)
	app := h.cfg.Apps[0].ID
	channel := ViewChannel(id)
	uid, err := h.viewers.issue(viewerOwner(p), id, 0, ttl, time.Now())
	if err != nil {
		return nil, &whip.Error{Status: http.StatusTooManyRequests, Code: "RATE_LIMITED", Message: err.Error()}
	}
	privs := []string{token.PrivJoin, token.PrivSubscribe}
	if talk {
		privs = append(privs, token.PrivPublishAudio)
	}
	tok, _, err := mint(app, h.certs[app], channel, uid, privs, ttl)
	if err != nil {
		return nil, &whip.Error{Status: http.StatusInternalServerError, Code: rtc.CodeInternal, Message: err.Error()}
	}
	h.audit(r, p, id, "watch", "channel", channel, "uid", uid, "talk", talk, "via", "whep")
	reply, err := h.dir.Command(r.Context(), id, map[string]any{"action": "join", "channel": channel, "appId": app}, 15*time.Second)
	if errors.Is(err, directory.ErrNoReply) {
		return nil, &whip.Error{Status: http.StatusGatewayTimeout, Code: "NO_REPLY", Message: "device " + id + " did not reply in 15 s"}
	}
	if err != nil {
		return nil, &whip.Error{Status: http.StatusBadGateway, Code: "MQTT", Message: err.Error()}
	}
	var rep struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	json.Unmarshal(reply, &rep)
	if !rep.OK {
		return nil, &whip.Error{Status: http.StatusBadGateway, Code: "DEVICE_REFUSED", Message: "device " + id + " did not join: " + rep.Error}
	}
	devUID := h.deviceUID(id, reply)
	return &whip.Grant{AppID: app, Channel: channel, Token: tok, UID: uid, NoTakeover: true, Prefer: devUID,
		Ended: func() { h.releaseViewed(id, devUID) }}, nil
}

// releaseViewed sends a device a leave once its last viewer has gone from its view channel (a
// device an admin sent elsewhere stays where it is), as /unwatch does.
func (h *Hub) releaseViewed(id string, devUID uint32) {
	for _, d := range h.dir.Devices() {
		var st struct {
			Channel string `json:"channel"`
		}
		if d.ID == id && json.Unmarshal(d.State, &st) == nil && st.Channel != ViewChannel(id) {
			return
		}
	}
	for _, u := range h.sfu.ChannelUsers(h.cfg.Apps[0].ID, ViewChannel(id)) {
		if u != devUID {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := h.dir.Command(ctx, id, map[string]any{"action": "leave"}, 15*time.Second); err != nil {
		h.log.Info("releasing a device after its last WHEP viewer", "component", "whip", "device", id, "err", err)
	}
}
