package hub

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/hub/netconf"
)

// App is one tenant: an App ID and its certificate (the token signing secret).
type App struct {
	ID string `yaml:"id"`
	// Certificate signs tokens. Empty: generated on first start and kept in the state
	// directory (app-<id>.cert), so tokens survive restarts.
	Certificate string `yaml:"certificate"`
	// CertificateFile reads the certificate from a file. Without either, the systemd
	// credential "appCertificate-<id>" is used when there is one (see ResolveSecrets).
	CertificateFile string `yaml:"certificateFile"`
	// PreviousCertificates still verify tokens (each names its certificate by a key id), so a
	// certificate can be rotated with overlap: move the old one here, set a new one, and drop
	// the old one once its tokens have expired (24 h at most).
	PreviousCertificates []string `yaml:"previousCertificates"`
}

// Config is the hub's configuration (camhub.yaml); Defaults gives the embedded defaults.
type Config struct {
	// Listen is the web, API and signalling address.
	Listen string `yaml:"listen"`
	// MQTT is "embedded" (run a broker inside the hub) or a broker URL (tcp://, ssl://, ws://…).
	MQTT string `yaml:"mqtt"`
	// MQTTListen is where the embedded broker listens.
	MQTTListen string `yaml:"mqttListen"`
	// MQTTWSListen adds a MQTT-over-WebSocket listener to the embedded broker ("" = none).
	MQTTWSListen string `yaml:"mqttWSListen"`
	// MQTTTLSListen adds an MQTT-over-TLS listener (e.g. ":8883") to the embedded broker, with
	// the hub's certificate (the same as HTTPS: self-signed, files or ACME) ("" = none).
	MQTTTLSListen string `yaml:"mqttTLSListen"`
	// MQTTPrefix is the topic prefix of the devices (camagent/<id>/…).
	MQTTPrefix   string `yaml:"mqttPrefix"`
	MQTTUsername string `yaml:"mqttUsername"`
	MQTTPassword string `yaml:"mqttPassword"`
	// MQTTPasswordFile reads the password from a file; without either, the systemd
	// credential "mqttPassword" is used when there is one.
	MQTTPasswordFile string `yaml:"mqttPasswordFile"`
	// Apps served by this hub; the first is the one the pages use.
	Apps []App `yaml:"apps"`
	// StateDir keeps generated secrets; empty: $STATE_DIRECTORY (systemd), else
	// ~/.local/state/camhub (see Derive).
	StateDir string `yaml:"stateDir"`
	// Demo trusts clients on loopback (no login, anonymous MQTT on loopback): make run and
	// tests only. A demo hub refuses to listen beyond loopback. Otherwise every request and
	// every MQTT client authenticates (docs/security.md).
	Demo bool `yaml:"demo"`
	// TrustedProxies are the addresses (IPs or CIDRs) of reverse proxies in front of the hub
	// whose X-Forwarded-For / Forwarded headers name the real client; from anyone else those
	// headers are ignored for addresses and refuse demo trust.
	TrustedProxies []string `yaml:"trustedProxies"`
	// AllowedOrigins are web origins (https://app.example.com) besides the hub's own whose
	// pages may call the API and open signalling and MQTT WebSockets.
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// AllowedHosts are host names the hub answers to besides IP addresses, localhost, this
	// machine's name, network.hosts and network.acme.domains (a DNS-rebinding defence).
	AllowedHosts []string `yaml:"allowedHosts"`
	// MetricsListen serves /metrics without credentials on its own address (a loopback
	// address for a local Prometheus); on the main listener /metrics needs an admin or a key
	// with the metrics action. Empty: off.
	MetricsListen string `yaml:"metricsListen"`
	// ICELoopbackOnly limits media to loopback addresses; "auto" means: when Listen is loopback.
	ICELoopbackOnly string `yaml:"iceLoopbackOnly"`
	// MaxConnectionsPerAddress caps the signalling sockets of one client address (0: 32): a
	// flood from one address cannot take every place, while a household or an office behind
	// one NAT address may need more.
	MaxConnectionsPerAddress int `yaml:"maxConnectionsPerAddress"`
	// LogLevel is debug, info, warn or error; LogLevels sets it per component
	// (hub, sfu, broker, directory…), e.g. {sfu: debug}.
	LogLevel  string            `yaml:"logLevel"`
	LogLevels map[string]string `yaml:"logLevels"`
	// Network: HTTPS, media ports and public addresses, TURN (docs/networking.md).
	Network netconf.Config `yaml:"network"`
	// Cluster joins several hubs into one service (docs/scaling.md); without Redis the hub
	// is a single hub.
	Cluster Cluster `yaml:"cluster"`
}

// Cluster places channels across several hubs through a directory in Redis: each channel
// runs on one hub, and a client that reaches another is sent there.
type Cluster struct {
	// Redis is the shared directory's server: redis://[:password@]host:6379[/db], rediss://
	// for TLS. Empty: no cluster.
	Redis string `yaml:"redis"`
	// HubID names this hub among the others (unique; empty: the machine's host name).
	HubID string `yaml:"hubID"`
	// PublicURL is the base URL clients reach this hub at (https://hub2.example:8443): where
	// the other hubs send the users of the channels it runs.
	PublicURL string `yaml:"publicURL"`
	// Lease is how long a dead hub keeps its registration and its channels (0: 3s): a
	// channel of a killed hub moves within about this.
	Lease time.Duration `yaml:"lease"`
	// Prefix starts the directory's Redis keys ("": camhub).
	Prefix string `yaml:"prefix"`
	// RelayAbove: once a channel has this many users on the hub that holds it, its next
	// viewers are placed on other hubs, which relay it (docs/scaling.md); 0: never.
	RelayAbove int `yaml:"relayAbove"`
}

// Defaults are the embedded defaults: everything on loopback, App ID "demo", not in demo
// mode (people log in; make run adds --demo).
func Defaults() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		MQTT:            "embedded",
		MQTTListen:      "127.0.0.1:1883",
		MQTTPrefix:      "camagent",
		Apps:            []App{{ID: "demo"}},
		StateDir:        defaultStateDir(),
		ICELoopbackOnly: "auto",
		LogLevel:        "info",
	}
}

// Derive fills the settings whose defaults depend on the host and are written empty in a
// configuration file: the state directory.
func (c *Config) Derive() {
	if c.StateDir == "" {
		c.StateDir = defaultStateDir()
	}
	if c.Cluster.Redis != "" && c.Cluster.HubID == "" {
		c.Cluster.HubID, _ = os.Hostname()
	}
}

// ResolveSecrets reads the secrets given as files or systemd credentials (credDir is
// $CREDENTIALS_DIRECTORY, empty when there is none): the MQTT password, App
// certificates and the TURN secret.
func (c *Config) ResolveSecrets(credDir string) error {
	var errs []error
	pw, err := config.Secret("mqttPassword", c.MQTTPassword, c.MQTTPasswordFile, "mqttPassword", credDir)
	errs = append(errs, err)
	c.MQTTPassword, c.MQTTPasswordFile = pw, ""
	for i := range c.Apps {
		a := &c.Apps[i]
		if a.Certificate == "" && a.CertificateFile == "" && credDir != "" {
			cert, err := config.Secret("apps["+a.ID+"].certificate", "", "", "appCertificate-"+a.ID, credDir)
			errs = append(errs, err)
			a.Certificate = cert
		}
	}
	if t := &c.Network.TURN; t.Secret == "" && t.SecretFile == "" && credDir != "" {
		secret, err := config.Secret("network.turn.secret", "", "", "turnSecret", credDir)
		errs = append(errs, err)
		t.Secret = secret
	}
	return errors.Join(errs...)
}

func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(filepath.Dir(d), ".local", "state", "camhub")
	}
	return filepath.Join(os.TempDir(), "camhub")
}

// Validate checks the configuration and says what to fix.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", c.Listen))
	}
	if c.MQTT == "" {
		errs = append(errs, errors.New(`mqtt: empty (use "embedded" or a broker URL such as tcp://127.0.0.1:1883)`))
	} else if c.MQTT != "embedded" && !strings.Contains(c.MQTT, "://") {
		errs = append(errs, fmt.Errorf("mqtt: %q is neither \"embedded\" nor a URL (tcp://host:1883)", c.MQTT))
	}
	if len(c.Apps) == 0 {
		errs = append(errs, errors.New("apps: at least one App is needed"))
	}
	if c.MaxConnectionsPerAddress < 0 || c.MaxConnectionsPerAddress > 100000 {
		errs = append(errs, fmt.Errorf("maxConnectionsPerAddress: %d is outside 0 (the default, 32) to 100000", c.MaxConnectionsPerAddress))
	}
	seen := map[string]bool{}
	for i, a := range c.Apps {
		if a.ID == "" || len(a.ID) > 64 {
			errs = append(errs, fmt.Errorf("apps[%d].id: must be 1-64 characters", i))
		}
		if seen[a.ID] {
			errs = append(errs, fmt.Errorf("apps[%d].id: %q appears twice", i, a.ID))
		}
		seen[a.ID] = true
	}
	errs = append(errs, c.validateTrust()...)
	errs = append(errs, c.Cluster.validate())
	switch c.ICELoopbackOnly {
	case "auto", "true", "false":
	default:
		errs = append(errs, fmt.Errorf("iceLoopbackOnly: %q (want auto, true or false)", c.ICELoopbackOnly))
	}
	if _, err := config.Logger(io.Discard, c.LogLevel, c.LogLevels, false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Cluster) validate() error {
	if c.Redis == "" {
		return nil
	}
	var errs []error
	if u, err := url.Parse(c.Redis); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		errs = append(errs, fmt.Errorf("cluster.redis: %q is not a Redis URL such as redis://127.0.0.1:6379", redactURL(c.Redis)))
	}
	if c.HubID == "" || len(c.HubID) > 64 {
		errs = append(errs, errors.New("cluster.hubID: must be 1-64 characters"))
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("cluster.publicURL: %q is not the base URL clients reach this hub at (https://hub2.example:8443)", c.PublicURL))
	}
	if c.Lease != 0 && (c.Lease < 300*time.Millisecond || c.Lease > time.Minute) {
		errs = append(errs, fmt.Errorf("cluster.lease: %s is outside 300ms to 1m", c.Lease))
	}
	if c.RelayAbove < 0 {
		errs = append(errs, fmt.Errorf("cluster.relayAbove: %d is negative (0: no relays)", c.RelayAbove))
	}
	return errors.Join(errs...)
}

// loopbackOnlyICE decides whether media stays on loopback.
func (c *Config) loopbackOnlyICE() bool {
	switch c.ICELoopbackOnly {
	case "true":
		return true
	case "false":
		return false
	}
	host, _, _ := net.SplitHostPort(c.Listen)
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// Certificates resolves every App's certificate (from the config, a file, or the state
// directory, generating one there on first use).
func (c *Config) Certificates() (map[string]string, error) {
	out := map[string]string{}
	for _, a := range c.Apps {
		switch {
		case a.Certificate != "":
			out[a.ID] = a.Certificate
		case a.CertificateFile != "":
			b, err := os.ReadFile(a.CertificateFile)
			if err != nil {
				return nil, fmt.Errorf("app %s: read certificate: %w", a.ID, err)
			}
			out[a.ID] = strings.TrimSpace(string(b))
		default:
			cert, err := stateCertificate(c.StateDir, a.ID)
			if err != nil {
				return nil, err
			}
			out[a.ID] = cert
		}
		if len(out[a.ID]) < 16 {
			return nil, fmt.Errorf("app %s: certificate must be at least 16 characters", a.ID)
		}
	}
	return out, nil
}

func stateCertificate(dir, app string) (string, error) {
	path := filepath.Join(dir, "app-"+app+".cert")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("app %s: create state directory: %w", app, err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	cert := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(cert+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("app %s: store certificate: %w", app, err)
	}
	return cert, nil
}

// isLoopbackAddr reports whether a listen address (host:port) binds loopback only.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateTrust checks what the trust model needs: a demo hub stays on loopback; a hub that
// serves people beyond loopback does so over TLS (or behind a TLS proxy it names).
func (c *Config) validateTrust() []error {
	var errs []error
	if c.Demo {
		for _, l := range []struct{ key, addr string }{{"listen", c.Listen}, {"mqttListen", c.MQTTListen}, {"mqttWSListen", c.MQTTWSListen}, {"mqttTLSListen", c.MQTTTLSListen}, {"metricsListen", c.MetricsListen}} {
			if l.addr != "" && (l.key == "listen" || c.MQTT == "embedded" || l.key == "metricsListen") && !isLoopbackAddr(l.addr) {
				errs = append(errs, fmt.Errorf("%s: %q is beyond loopback, and demo mode trusts every loopback client without authentication: "+
					"turn demo off (people then log in: camhub user add admin --admin) or listen on 127.0.0.1", l.key, l.addr))
			}
		}
	} else if !isLoopbackAddr(c.Listen) && !c.Network.UseTLS(c.Listen) && len(c.TrustedProxies) == 0 {
		errs = append(errs, fmt.Errorf("listen: %q is beyond loopback without TLS (network.tls: off), so passwords and session cookies would cross the network in clear: "+
			"set network.tls to auto or on, or put a TLS reverse proxy on this machine and list it in trustedProxies", c.Listen))
	}
	if c.MQTTTLSListen != "" && c.MQTT != "embedded" {
		errs = append(errs, fmt.Errorf("mqttTLSListen: %q is a listener of the embedded broker, but mqtt is %q: remove it, or set mqtt: embedded", c.MQTTTLSListen, redactURL(c.MQTT)))
	}
	if c.MetricsListen != "" && !isLoopbackAddr(c.MetricsListen) {
		errs = append(errs, fmt.Errorf("metricsListen: %q must be a loopback address (it serves /metrics without credentials)", c.MetricsListen))
	}
	if _, err := parseCIDRs(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("trustedProxies: %w", err))
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || o == "*" {
			errs = append(errs, fmt.Errorf("allowedOrigins: %q is not an origin such as https://app.example.com", o))
		}
	}
	for i, a := range c.Apps {
		for _, p := range a.PreviousCertificates {
			if len(p) < 16 {
				errs = append(errs, fmt.Errorf("apps[%d].previousCertificates: a certificate has at least 16 characters", i))
			}
		}
	}
	return errs
}

// parseCIDRs parses IPs and CIDRs.
func parseCIDRs(list []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range list {
		if !strings.Contains(s, "/") {
			ip := net.ParseIP(s)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", s)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", s)
		}
		out = append(out, n)
	}
	return out, nil
}
