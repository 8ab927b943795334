package agent

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// The hubs a device talks to are the ones in its own configuration (hub, hubs): a join
// command's "server" may pick one of them, never name another, so a command cannot choose
// where the device sends its media or its credential.

// normalizeHubURL is the canonical form of a hub base URL, for comparing: scheme and host
// lower-cased, the default port made explicit, a trailing slash dropped. It refuses what is
// not a hub base URL (another scheme, no host, user info, a query or a fragment).
func normalizeHubURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a URL: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	port := ""
	switch scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return "", errors.New("not an http:// or https:// URL")
	}
	if u.Hostname() == "" {
		return "", errors.New("no host")
	}
	if u.User != nil {
		return "", errors.New("user info in a hub URL is not used: give the device credential as credentialFile or hubKey")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", errors.New("a hub base URL has no query or fragment")
	}
	if p := u.Port(); p != "" {
		port = p
	}
	host := strings.ToLower(u.Hostname())
	return scheme + "://" + net.JoinHostPort(host, port) + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// hubURLs are the hubs this device trusts: hub first, then hubs.
func (c *Config) hubURLs() []string {
	return append([]string{c.Hub}, c.Hubs...)
}

// hubFor picks the configured hub a join's server names (empty: hub). The answer is the
// configured URL, not the command's spelling of it.
func (c *Config) hubFor(server string) (string, error) {
	if server == "" {
		return c.Hub, nil
	}
	refuse := fmt.Errorf("server %q is not one of this device's configured hubs (hub, hubs)", redactURL(server))
	want, err := normalizeHubURL(server)
	if err != nil {
		return "", refuse
	}
	for _, h := range c.hubURLs() {
		if n, err := normalizeHubURL(h); err == nil && n == want {
			return h, nil
		}
	}
	return "", refuse
}

// isLoopbackHost reports whether host (a name or an address, without port) is this
// machine: localhost, 127.0.0.0/8 or ::1. Other names are not resolved: DNS can lie.
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// transportProblems lists where this configuration would send a secret in the clear to
// another machine: the device credential (hubKey) to an http:// hub, the MQTT password
// over tcp:// or ws://. Each says what to configure instead.
func (c *Config) transportProblems() []string {
	var out []string
	if c.HubKey != "" {
		for i, h := range c.hubURLs() {
			u, err := url.Parse(h)
			if err != nil || !strings.EqualFold(u.Scheme, "http") || isLoopbackHost(u.Hostname()) {
				continue
			}
			key := "hub"
			if i > 0 {
				key = fmt.Sprintf("hubs[%d]", i-1)
			}
			out = append(out, fmt.Sprintf("%s: %s is plain http:// to another machine, and the device credential (hubKey) would go there in the clear: use https:// (set hubCA for a self-signed hub certificate)", key, redactURL(h)))
		}
	}
	for _, b := range strings.Split(c.MQTT, ",") { // each broker of a cluster
		b = strings.TrimSpace(b)
		u, err := url.Parse(b)
		if err != nil {
			continue
		}
		_, urlPassword := u.User.Password()
		scheme := strings.ToLower(u.Scheme)
		if (c.MQTTPassword != "" || urlPassword) && (scheme == "tcp" || scheme == "ws") && !isLoopbackHost(u.Hostname()) {
			out = append(out, fmt.Sprintf("mqtt: %s is unencrypted to another machine, and the MQTT password would go there in the clear: use ssl:// (or wss://) and set mqttCAFile to the CA of the broker's certificate", redactURL(b)))
		}
	}
	return out
}

// Warnings are what Validate lets through only because allowInsecureTransport is set: the
// owner and the logs should still hear of them.
func (c *Config) Warnings() []string {
	if !c.AllowInsecureTransport {
		return nil
	}
	var out []string
	for _, p := range c.transportProblems() {
		out = append(out, p+" (allowed by allowInsecureTransport: a lab network only)")
	}
	return out
}

// redactURL drops the password (and the user name) from a URL for logs and messages.
func redactURL(s string) string {
	if strings.Contains(s, ",") { // several brokers
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = redactURL(strings.TrimSpace(p))
		}
		return strings.Join(parts, ",")
	}
	u, err := url.Parse(s)
	if err != nil {
		// Not parsable: still hide anything that looks like user info.
		if scheme, rest, ok := strings.Cut(s, "://"); ok {
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				return scheme + "://…@" + rest[at+1:]
			}
		}
		return s
	}
	if u.User == nil {
		return s
	}
	u.User = nil
	return strings.Replace(u.String(), "://", "://…@", 1)
}

// RedactURL is redactURL for the command line (camagent check).
func RedactURL(s string) string { return redactURL(s) }
