package hub

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// The browser edge: what every request passes before a handler sees it (docs/security.md).
// - Host must be one this hub answers to (DNS rebinding: a page on attacker.example whose name
//   now points at 127.0.0.1 sends Host: attacker.example).
// - State-changing requests (POST, PUT, PATCH, DELETE) and WebSocket upgrades carrying an
//   Origin must come from the hub's own origin or one in allowedOrigins; /api bodies must be
//   JSON (a cross-site form or text/plain POST is not).
// - Every response forbids framing, sniffing and referrers, and sets a CSP; HTTPS adds HSTS.

// forwardHeaders are the headers proxies and tunnels add; a request carrying any of them
// did not come from a process on this machine itself, whatever its source address.
var forwardHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Real-Ip", "Cf-Connecting-Ip", "True-Client-Ip", "X-Client-Ip", "Fastly-Client-Ip", "X-Original-Forwarded-For"}

func forwarded(r *http.Request) bool {
	for _, h := range forwardHeaders {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

func stateChanging(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return isUpgrade(r)
	}
	return true
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// edge wraps the hub's routes with the checks above.
func (h *Hub) edge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !h.hostAllowed(r.Host) {
			h.noise("host", r, "host", r.Host)
			writeError(w, http.StatusMisdirectedRequest, "HOST_REFUSED", "this hub does not answer to the host name "+
				quoteTrunc(r.Host)+": add it to allowedHosts (or network.hosts)")
			return
		}
		if stateChanging(r) {
			if o := r.Header.Get("Origin"); o != "" && !h.originAllowed(o, r) {
				h.noise("origin", r, "origin", o)
				writeError(w, http.StatusForbidden, "ORIGIN_REFUSED", "requests from the web origin "+quoteTrunc(o)+
					" are refused: only this hub's own pages (or allowedOrigins) may change things")
				return
			}
			if strings.HasPrefix(r.URL.Path, "/api/") && !isJSON(r) {
				h.noise("content-type", r)
				writeError(w, http.StatusUnsupportedMediaType, "JSON_ONLY", "the API takes JSON bodies only (Content-Type: application/json)")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

func quoteTrunc(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

// hostAllowed reports whether the hub answers to Host host (with or without a port): IP
// literals, localhost, this machine's names, and the configured names.
func (h *Hub) hostAllowed(host string) bool {
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	}
	name = strings.TrimSuffix(strings.ToLower(strings.Trim(name, "[]")), ".")
	if name == "" {
		return false
	}
	if net.ParseIP(name) != nil || name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	for _, n := range h.hostNames {
		if n == name {
			return true
		}
	}
	return false
}

// allowedHostNames lists the names hostAllowed accepts besides IP literals and localhost.
func allowedHostNames(c Config) []string {
	var out []string
	add := func(n string) {
		if n = strings.TrimSuffix(strings.ToLower(n), "."); n != "" {
			out = append(out, n)
		}
	}
	if hn, err := os.Hostname(); err == nil {
		add(hn)
		add(hn + ".local")
	}
	for _, l := range [][]string{c.AllowedHosts, c.Network.Hosts, c.Network.ACME.Domains} {
		for _, n := range l {
			add(n)
		}
	}
	return out
}

// originAllowed reports whether a request's Origin is the hub's own (same host as the request
// and the scheme it arrived on) or an allowed one.
func (h *Hub) originAllowed(origin string, r *http.Request) bool {
	for _, o := range h.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // includes "null" (sandboxed frames, file: pages)
	}
	scheme := "http"
	if r.TLS != nil || h.fromTrustedProxy(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	host := r.Host
	if h.fromTrustedProxy(r) {
		if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
			host = fh
		}
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, host)
}

// fromTrustedProxy reports whether the request's peer is one of trustedProxies.
func (h *Hub) fromTrustedProxy(r *http.Request) bool {
	ip := peerIP(r.RemoteAddr)
	if ip == nil {
		return false
	}
	for _, n := range h.proxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func peerIP(remoteAddr string) net.IP {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

// clientAddr is the address of the client a request comes from: the peer, or behind a
// trusted proxy the last address in X-Forwarded-For that is not a trusted proxy.
func (h *Hub) clientAddr(r *http.Request) string {
	if !h.fromTrustedProxy(r) {
		if ip := peerIP(r.RemoteAddr); ip != nil {
			return ip.String()
		}
		return r.RemoteAddr
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		ip := net.ParseIP(strings.TrimSpace(hops[i]))
		if ip == nil {
			break
		}
		trusted := false
		for _, n := range h.proxies {
			trusted = trusted || n.Contains(ip)
		}
		if !trusted {
			return ip.String()
		}
	}
	return peerIP(r.RemoteAddr).String()
}

// demoTrusted reports whether a request gets demo mode's loopback trust: the hub is in demo
// mode, the peer is on loopback, no proxy forwarded it, it names a loopback host, and a
// browser's Origin (if any) is the hub's own.
func (h *Hub) demoTrusted(r *http.Request) bool {
	if !h.cfg.Demo || forwarded(r) {
		return false
	}
	if ip := peerIP(r.RemoteAddr); ip == nil || !ip.IsLoopback() {
		return false
	}
	name := r.Host
	if hn, _, err := net.SplitHostPort(r.Host); err == nil {
		name = hn
	}
	name = strings.Trim(strings.ToLower(name), "[]")
	if ip := net.ParseIP(name); !(name == "localhost" || ip != nil && ip.IsLoopback()) {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && !h.originAllowed(o, r) {
		return false
	}
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs == "cross-site" {
		return false
	}
	return true
}
