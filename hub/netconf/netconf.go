// Package netconf is the hub's network configuration (the "network" section of camhub.yaml):
// HTTPS, the media ports and public addresses, and TURN. The zero value is the embedded
// default: plain HTTP on a loopback listen address, media on ephemeral UDP ports, no TURN.
// docs/networking.md explains each setting with the setups it is for.
package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config is the "network" section of the hub's configuration.
type Config struct {
	// TLS is auto (also when empty: HTTPS unless the hub listens on a loopback address), on
	// or off (plain HTTP anywhere, e.g. behind a reverse proxy that terminates TLS).
	TLS string `yaml:"tls"`
	// TLSCert and TLSKey are PEM files. Without them a self-signed certificate is generated
	// in the state directory on first start (its SHA-256 fingerprint is logged).
	TLSCert string `yaml:"tlsCert"`
	TLSKey  string `yaml:"tlsKey"`
	// Hosts are the names and addresses the self-signed certificate is made for, besides
	// localhost, the host name, the machine's addresses and PublicIPs.
	Hosts []string `yaml:"hosts"`
	// HTTPRedirectListen is an address (e.g. ":80") that answers plain HTTP with a redirect to
	// the HTTPS address (empty: none), and ACME's HTTP-01 challenges.
	HTTPRedirectListen string `yaml:"httpRedirectListen"`
	// ACME gets the certificate for public names from an ACME CA (Let's Encrypt).
	ACME ACME `yaml:"acme"`
	// PublicIPs are announced to clients as the hub's media addresses (1:1 NAT: a VPS or a
	// home router forwarding UDPPort and TCPPort to the hub).
	PublicIPs []string `yaml:"publicIPs"`
	// UDPPort carries all media on one UDP port (0: an ephemeral port per connection).
	UDPPort int `yaml:"udpPort"`
	// TCPPort accepts media over ICE-TCP for clients that have no UDP (0: off).
	TCPPort int `yaml:"tcpPort"`
	// TURN configures the relays handed to clients.
	TURN TURN `yaml:"turn"`
}

// TURN configures relays: an embedded TURN server, external ones (coturn with
// use-auth-secret), or both; all share Secret.
type TURN struct {
	// Embedded runs a TURN server inside the hub.
	Embedded bool `yaml:"embedded"`
	// Host is the name or address clients reach the embedded TURN server at (empty: the
	// first of PublicIPs, else the host the client used to reach the hub).
	Host string `yaml:"host"`
	// UDPPort and TCPPort of the embedded server (0: 3478; -1: off); TLSPort (0: off) uses
	// the hub's certificate.
	UDPPort int `yaml:"udpPort"`
	TCPPort int `yaml:"tcpPort"`
	TLSPort int `yaml:"tlsPort"`
	// RelayIP is the address of the embedded server's relays (empty: the machine's first
	// non-loopback IPv4 address); RelayPortMin/Max bound their ports (0: any).
	RelayIP      string `yaml:"relayIP"`
	RelayPortMin int    `yaml:"relayPortMin"`
	RelayPortMax int    `yaml:"relayPortMax"`
	// URLs are external TURN servers (turn:host:3478?transport=udp, turns:host:5349…) whose
	// static-auth-secret is Secret.
	URLs []string `yaml:"urls"`
	// Secret is shared with the TURN servers. Empty: generated in the state directory
	// (turn-secret) on first start; SecretFile reads it from a file.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secretFile"`
	// CredentialTTL is how long the credentials handed to a client are valid (0: 12h; a
	// credential only needs to outlive the allocation's start, relays refresh with it). A
	// credential never outlives the token of the user it is handed to.
	CredentialTTL time.Duration `yaml:"credentialTTL"`
	// UserQuota and TotalQuota bound the embedded server's live allocations per credential
	// and in all (0: 8 and 512). A viewer needs one or two.
	UserQuota  int `yaml:"userQuota"`
	TotalQuota int `yaml:"totalQuota"`
}

// ACME: certificates for Domains from an ACME CA, renewed before they expire and kept in the
// state directory (acme/). The CA checks that the hub holds a name with a TLS-ALPN-01
// challenge on the HTTPS port (the CA connects to port 443 of the name) or an HTTP-01
// challenge on HTTPRedirectListen (port 80). Clients reaching the hub by another name or an
// address get the self-signed certificate.
type ACME struct {
	// Domains are the public names whose DNS points at the hub; empty: no ACME.
	Domains []string `yaml:"domains"`
	// Email is the account's contact for the CA's notices (optional).
	Email string `yaml:"email"`
	// Directory is the CA's ACME directory URL (empty: Let's Encrypt's).
	Directory string `yaml:"directory"`
	// DirectoryCAFile is a PEM file of roots to trust for Directory besides the system's (a
	// private CA).
	DirectoryCAFile string `yaml:"directoryCAFile"`
}

// Enabled reports whether certificates come from ACME.
func (a ACME) Enabled() bool { return len(a.Domains) > 0 }

// Default TURN ports (RFC 8656).
const (
	DefaultTURNPort = 3478
	DefaultTTL      = 12 * time.Hour
)

// Enabled reports whether clients get any TURN server.
func (t TURN) Enabled() bool { return t.Embedded || len(t.URLs) > 0 }

// Ports returns the embedded server's UDP, TCP and TLS ports (0: off).
func (t TURN) Ports() (udp, tcp, tls int) {
	pick := func(p int) int {
		switch {
		case p == 0:
			return DefaultTURNPort
		case p < 0:
			return 0
		}
		return p
	}
	return pick(t.UDPPort), pick(t.TCPPort), max(t.TLSPort, 0)
}

// TTL is the credentials' lifetime.
func (t TURN) TTL() time.Duration {
	if t.CredentialTTL == 0 {
		return DefaultTTL
	}
	return t.CredentialTTL
}

// UseTLS decides whether the web server speaks HTTPS, given its listen address.
func (c Config) UseTLS(listen string) bool {
	switch c.TLS {
	case "on":
		return true
	case "off":
		return false
	}
	if c.TLSCert != "" || c.ACME.Enabled() {
		return true
	}
	host, _, _ := net.SplitHostPort(listen)
	ip := net.ParseIP(host)
	return !(host == "localhost" || (ip != nil && ip.IsLoopback()))
}

// Validate checks the section and says what to fix (keys prefixed with "network.").
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("network.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	switch c.TLS {
	case "", "auto", "on", "off":
	default:
		bad("tls", "%q (want auto, on or off)", c.TLS)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tlsCert", "tlsCert and tlsKey go together")
	}
	if a := c.ACME; a.Enabled() {
		if c.TLSCert != "" {
			bad("acme.domains", "a certificate comes from ACME or from tlsCert/tlsKey: keep one")
		}
		if c.TLS == "off" {
			bad("acme.domains", "ACME needs tls: auto or on")
		}
		for _, d := range a.Domains {
			if d == "" || net.ParseIP(d) != nil || strings.ContainsAny(d, "*:/ ") || !strings.Contains(d, ".") {
				bad("acme.domains", "%q is not a DNS name (ACME certifies names, not addresses or wildcards)", d)
			}
		}
		if a.Directory != "" && !strings.HasPrefix(a.Directory, "https://") {
			bad("acme.directory", "%q is not an https:// URL", a.Directory)
		}
	}
	if c.HTTPRedirectListen != "" {
		if _, _, err := net.SplitHostPort(c.HTTPRedirectListen); err != nil {
			bad("httpRedirectListen", "%q is not host:port (e.g. :80)", c.HTTPRedirectListen)
		}
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			bad("publicIPs", "%q is not an IP address", ip)
		}
	}
	port := func(key string, p int, minimum int) {
		if p < minimum || p > 65535 {
			bad(key, "%d is not a port (0-65535)", p)
		}
	}
	port("udpPort", c.UDPPort, 0)
	port("tcpPort", c.TCPPort, 0)
	t := c.TURN
	port("turn.udpPort", t.UDPPort, -1)
	port("turn.tcpPort", t.TCPPort, -1)
	port("turn.tlsPort", t.TLSPort, 0)
	port("turn.relayPortMin", t.RelayPortMin, 0)
	port("turn.relayPortMax", t.RelayPortMax, 0)
	if t.RelayPortMin > t.RelayPortMax || (t.RelayPortMin == 0) != (t.RelayPortMax == 0) {
		bad("turn.relayPortMin", "relayPortMin and relayPortMax go together, min ≤ max")
	}
	if t.RelayIP != "" && net.ParseIP(t.RelayIP) == nil {
		bad("turn.relayIP", "%q is not an IP address", t.RelayIP)
	}
	if t.Embedded {
		if u, tc, tl := t.Ports(); u == 0 && tc == 0 && tl == 0 {
			bad("turn.embedded", "every listener is off (udpPort, tcpPort, tlsPort)")
		}
		if c.UDPPort != 0 {
			if u, _, _ := t.Ports(); u == c.UDPPort {
				bad("turn.udpPort", "%d is also network.udpPort", u)
			}
		}
		if c.TCPPort != 0 {
			if _, tc, _ := t.Ports(); tc == c.TCPPort {
				bad("turn.tcpPort", "%d is also network.tcpPort", tc)
			}
		}
	}
	for _, u := range t.URLs {
		if err := checkTURNURL(u); err != nil {
			bad("turn.urls", "%v", err)
		}
	}
	if t.CredentialTTL < 0 || (t.CredentialTTL != 0 && t.CredentialTTL < time.Minute) {
		bad("turn.credentialTTL", "%s (at least 1m)", t.CredentialTTL)
	}
	if t.UserQuota < 0 {
		bad("turn.userQuota", "%d (0: the default, 8)", t.UserQuota)
	}
	if t.TotalQuota < 0 {
		bad("turn.totalQuota", "%d (0: the default, 512)", t.TotalQuota)
	}
	if t.Secret != "" && len(t.Secret) < 16 {
		bad("turn.secret", "must be at least 16 characters")
	}
	return errors.Join(errs...)
}

func checkTURNURL(s string) error {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || (scheme != "turn" && scheme != "turns" && scheme != "stun" && scheme != "stuns") || rest == "" {
		return fmt.Errorf("%q is not a turn:, turns:, stun: or stuns: URL", s)
	}
	if strings.HasPrefix(rest, "//") {
		return fmt.Errorf("%q: write turn:host:port, without //", s)
	}
	hostport, query, _ := strings.Cut(rest, "?")
	if hostport == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return fmt.Errorf("%q: %v", s, err)
		}
		if tr := q.Get("transport"); tr != "" && tr != "udp" && tr != "tcp" {
			return fmt.Errorf("%q: transport must be udp or tcp", s)
		}
	}
	return nil
}
