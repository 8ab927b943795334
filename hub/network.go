package hub

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/camagent/camagent/hub/tlsconf"
	"github.com/camagent/camagent/hub/turn"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
	"golang.org/x/crypto/acme/autocert"
)

// network holds what the "network" section starts: media muxes, the TURN server, TLS.
type network struct {
	closers []func() error
	tls     *tls.Config
	acme    *autocert.Manager // nil without network.acme
	secret  string
	turn    *turn.Server
}

func (n *network) Close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}

// startNetwork opens the media ports and the TURN server, loads the certificate, and fills
// the API options accordingly. On error everything opened so far is closed.
func (h *Hub) startNetwork(o *rtc.APIOptions) (_ *network, err error) {
	nc := h.cfg.Network
	n := &network{}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	log := h.log.With("component", "hub")
	pionLog := turn.NewLoggerFactory(h.log.With("component", "ice"))
	o.NAT1To1IPs = nc.PublicIPs
	if nc.UDPPort != 0 {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: nc.UDPPort})
		if err != nil {
			return nil, fmt.Errorf("hub: media UDP port %d: %w", nc.UDPPort, err)
		}
		mux := webrtc.NewICEUDPMux(pionLog.NewLogger("udpmux"), conn)
		n.closers = append(n.closers, mux.Close)
		o.ICEUDPMux = mux
	}
	if nc.TCPPort != 0 {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{Port: nc.TCPPort})
		if err != nil {
			return nil, fmt.Errorf("hub: media TCP port %d: %w", nc.TCPPort, err)
		}
		mux := webrtc.NewICETCPMux(pionLog.NewLogger("tcpmux"), ln, 64)
		n.closers = append(n.closers, mux.Close)
		o.ICETCPMux = mux
	}
	if nc.UseTLS(h.cfg.Listen) || nc.TURN.TLSPort > 0 || (h.cfg.MQTT == "embedded" && h.cfg.MQTTTLSListen != "") {
		var c *tlsconf.Certificate
		if nc.TLSCert != "" {
			c, err = tlsconf.LoadFiles(nc.TLSCert, nc.TLSKey)
		} else {
			c, err = tlsconf.SelfSigned(h.cfg.StateDir, h.certificateHosts(), time.Now())
		}
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		log.Info("TLS certificate", "selfSigned", c.SelfSigned, "generated", c.Generated, "sha256", c.Fingerprint,
			"file", c.CertPath, "hosts", c.Hosts, "notAfter", c.NotAfter.UTC().Format(time.RFC3339))
		n.tls = c.Config()
		if a := nc.ACME; a.Enabled() {
			if n.acme, err = acmeManager(a, h.cfg.StateDir); err != nil {
				return nil, fmt.Errorf("hub: %w", err)
			}
			n.tls = acmeTLS(n.acme, a.Domains, n.tls)
			dir := a.Directory
			if dir == "" {
				dir = autocert.DefaultACMEDirectory
			}
			log.Info("TLS certificates from ACME, on first use", "domains", a.Domains, "directory", dir,
				"cache", filepath.Join(h.cfg.StateDir, "acme"))
		}
	}
	if !nc.TURN.Enabled() {
		return n, nil
	}
	if n.secret, err = turn.LoadSecret(nc.TURN.Secret, nc.TURN.SecretFile, h.cfg.StateDir); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if nc.TURN.Embedded {
		relay := net.ParseIP(nc.TURN.RelayIP)
		if relay == nil {
			relay = firstIPv4()
		}
		if relay == nil {
			return nil, fmt.Errorf("hub: turn: no non-loopback IPv4 address for relays; set network.turn.relayIP")
		}
		udp, tcp, tlsPort := nc.TURN.Ports()
		// Relays reach the hub's own media port(s) only: a client needs nothing else.
		opts := turn.Options{Secret: n.secret, RelayIP: relay, Logger: h.log,
			RelayPortMin: uint16(nc.TURN.RelayPortMin), RelayPortMax: uint16(nc.TURN.RelayPortMax),
			MediaIPs: mediaIPs(nc.PublicIPs, o.LoopbackOnly), MediaPort: nc.UDPPort,
			UserQuota: nc.TURN.UserQuota, TotalQuota: nc.TURN.TotalQuota}
		if udp != 0 {
			opts.UDPAddr = ":" + strconv.Itoa(udp)
		}
		if tcp != 0 {
			opts.TCPAddr = ":" + strconv.Itoa(tcp)
		}
		if tlsPort != 0 {
			opts.TLSAddr, opts.TLS = ":"+strconv.Itoa(tlsPort), n.tls
		}
		if n.turn, err = turn.Listen(opts); err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		n.closers = append(n.closers, n.turn.Close)
		log.Info("TURN server listening", "udp", n.turn.UDPAddr(), "tcp", n.turn.TCPAddr(), "tls", n.turn.TLSAddr(),
			"relayIP", relay.String(), "peers", "the hub's media addresses", "mediaPort", nc.UDPPort)
	}
	return n, nil
}

// certificateHosts are the names a self-signed certificate is made for.
func (h *Hub) certificateHosts() []string {
	nc := h.cfg.Network
	hosts := tlsconf.LocalHosts()
	hosts = append(hosts, nc.PublicIPs...)
	hosts = append(hosts, nc.Hosts...)
	if nc.TURN.Host != "" {
		hosts = append(hosts, nc.TURN.Host)
	}
	if host, _, err := net.SplitHostPort(h.cfg.Listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, host)
		}
	}
	slices.Sort(hosts[1:])
	return slices.Compact(hosts)
}

// mediaIPs returns the addresses the hub's ICE candidates are on: publicIPs and the machine's
// interface addresses (its loopback addresses instead when media is loopback-only).
func mediaIPs(public []string, loopbackOnly bool) func() []net.IP {
	var fixed []net.IP
	for _, s := range public {
		if ip := net.ParseIP(s); ip != nil {
			fixed = append(fixed, ip)
		}
	}
	return func() []net.IP {
		ips := slices.Clone(fixed)
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.IsLoopback() == loopbackOnly && !n.IP.IsLinkLocalUnicast() {
				ips = append(ips, n.IP)
			}
		}
		return ips
	}
}

// iceServers returns the servers a user gets in its join reply, with a fresh credential that
// expires after credentialTTL but not after the user's token (expires; zero: no token limit).
func (h *Hub) iceServers(n *network) func(host, appID string, uid uint32, expires time.Time) []rtc.ICEServer {
	nc := h.cfg.Network
	if !nc.TURN.Enabled() {
		return nil
	}
	return func(reqHost, _ string, uid uint32, expires time.Time) []rtc.ICEServer {
		c := turn.MintUntil(n.secret, strconv.FormatUint(uint64(uid), 10), nc.TURN.TTL(), expires, time.Now())
		urls := slices.Clone(nc.TURN.URLs)
		if n.turn != nil {
			host := nc.TURN.Host
			if host == "" && len(nc.PublicIPs) > 0 {
				host = nc.PublicIPs[0]
			}
			if host == "" {
				host = reqHost
				if hh, _, err := net.SplitHostPort(reqHost); err == nil {
					host = hh
				}
			}
			if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
				host = "[" + host + "]"
			}
			udp, tcp, tlsPort := nc.TURN.Ports()
			if udp != 0 {
				urls = append(urls, fmt.Sprintf("turn:%s:%d?transport=udp", host, udp))
			}
			if tcp != 0 {
				urls = append(urls, fmt.Sprintf("turn:%s:%d?transport=tcp", host, tcp))
			}
			if tlsPort != 0 {
				urls = append(urls, fmt.Sprintf("turns:%s:%d?transport=tcp", host, tlsPort))
			}
		}
		return []rtc.ICEServer{{URLs: urls, Username: c.Username, Credential: c.Password}}
	}
}

// redirectHandler sends plain HTTP requests to the HTTPS address.
func redirectHandler(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(r.Host); err == nil {
			host = hh
		}
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "[" + host + "]"
		}
		if httpsPort != "443" {
			host += ":" + httpsPort
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

func firstIPv4() net.IP {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.To4()
		}
	}
	return nil
}
