package hub

import (
	"net/http"
	"strings"
)

// basicKey lets a client that cannot set Authorization: Bearer present an API key as the
// password of HTTP Basic authentication (the user name is ignored). go2rtc's WHEP source,
// which Home Assistant runs, sends a URL's user info that way and nothing else
// (docs/homeassistant.md). Only the WHEP routes and snapshot.jpg take it, only a key counts,
// and only from a client that is not a browser (no Sec-Fetch-Mode): a browser that holds
// Basic credentials sends them with cross-site requests by itself, which a Bearer header
// and a SameSite cookie never are. The hub never asks for Basic credentials.
func basicKey(r *http.Request) *http.Request {
	_, pass, ok := r.BasicAuth()
	if !ok || !strings.HasPrefix(pass, "cam_k_") || r.Header.Get("Sec-Fetch-Mode") != "" {
		return r
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+pass)
	return r2
}
