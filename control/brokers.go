package control

import (
	"fmt"
	"net/url"
	"strings"
)

// Brokers parses a broker setting: one URL or several, comma-separated (the nodes of one
// broker cluster, tried in order at each connection). Each must be tcp://, ssl://, tls://,
// ws:// or wss:// with a host. Spaces around the commas are ignored.
func Brokers(s string) ([]*url.URL, error) {
	var out []*url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil {
			return nil, fmt.Errorf("control: broker URL: %w", err)
		}
		switch u.Scheme {
		case "tcp", "ssl", "tls", "ws", "wss":
		default:
			return nil, fmt.Errorf("control: broker URL %q: scheme must be tcp, ssl, tls, ws or wss", u.Redacted())
		}
		if u.Host == "" {
			return nil, fmt.Errorf("control: broker URL %q has no host", u.Redacted())
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("control: no broker URL in %q", s)
	}
	return out, nil
}

// BrokerURLs is Brokers for callers that need strings (paho's AddBroker): the URLs of s, or
// s itself when it does not parse (paho then reports the error at connection).
func BrokerURLs(s string) []string {
	us, err := Brokers(s)
	if err != nil {
		return []string{s}
	}
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

// redactedList is the brokers without credentials, comma-separated, for logs.
func redactedList(us []*url.URL) string {
	parts := make([]string, len(us))
	for i, u := range us {
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
