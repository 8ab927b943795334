package hub

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/hub/netconf"
)

// acmeManager gets and renews certificates for the configured names from an ACME CA,
// caching them (and the account key) in the state directory.
func acmeManager(a netconf.ACME, stateDir string) (*autocert.Manager, error) {
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(filepath.Join(stateDir, "acme")),
		HostPolicy: autocert.HostWhitelist(a.Domains...),
		Email:      a.Email,
	}
	if a.Directory != "" || a.DirectoryCAFile != "" {
		hc := http.DefaultClient
		if a.DirectoryCAFile != "" {
			pool, err := config.RootsWithFile("network.acme.directoryCAFile", a.DirectoryCAFile)
			if err != nil {
				return nil, err
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
			hc = &http.Client{Transport: tr}
		}
		m.Client = &acme.Client{DirectoryURL: a.Directory, HTTPClient: hc}
	}
	return m, nil
}

// acmeTLS serves the ACME certificate to clients that ask for one of the ACME names (SNI),
// and answers the CA's TLS-ALPN-01 challenges; every other client (an address, a LAN name)
// gets fallback, the self-signed certificate.
func acmeTLS(m *autocert.Manager, domains []string, fallback *tls.Config) *tls.Config {
	cfg := m.TLSConfig()
	cfg.MinVersion = tls.VersionTLS12
	get := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
		if slices.Contains(domains, name) || slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
			return get(hello)
		}
		return &fallback.Certificates[0], nil
	}
	return cfg
}
