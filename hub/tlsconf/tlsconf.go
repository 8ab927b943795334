// Package tlsconf gives the hub its certificate: a configured certificate and key, or a
// self-signed one generated in the state directory on first start and kept there, so browsers
// and agents can pin it by its fingerprint. The self-signed certificate is regenerated when it
// nears expiry or does not cover a name or address the hub is now reached at.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names of the self-signed certificate in the state directory.
const (
	CertFile = "tls-cert.pem"
	KeyFile  = "tls-key.pem"
)

// Lifetime of a self-signed certificate; it is renewed RenewBefore its expiry (on a start).
const (
	Lifetime    = 398 * 24 * time.Hour
	RenewBefore = 30 * 24 * time.Hour
)

// Certificate is the hub's loaded certificate.
type Certificate struct {
	TLS *tls.Certificate
	// Fingerprint is the SHA-256 of the leaf certificate, as browsers show it (AB:CD:…).
	Fingerprint string
	// SelfSigned is true for a generated certificate; Generated when this call made it.
	SelfSigned, Generated bool
	// CertPath is the PEM file of the certificate (clients may trust it, e.g. SSL_CERT_FILE).
	CertPath string
	// Hosts are the certificate's names and addresses.
	Hosts    []string
	NotAfter time.Time
}

// Config returns a server tls.Config serving c.
func (c *Certificate) Config() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{*c.TLS}, MinVersion: tls.VersionTLS12}
}

// LoadFiles loads a configured PEM certificate (chain) and key.
func LoadFiles(certFile, keyFile string) (*Certificate, error) {
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls: parse %s: %w", certFile, err)
	}
	return &Certificate{TLS: &kp, Fingerprint: Fingerprint(leaf.Raw), CertPath: certFile,
		Hosts: hostsOf(leaf), NotAfter: leaf.NotAfter}, nil
}

// SelfSigned loads the self-signed certificate from dir, generating it when it is missing,
// unreadable, near its expiry, or lacks one of hosts.
func SelfSigned(dir string, hosts []string, now time.Time) (*Certificate, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if c, err := LoadFiles(certPath, keyPath); err == nil && now.Add(RenewBefore).Before(c.NotAfter) && covers(c.Hosts, hosts) {
		c.SelfSigned = true
		return c, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: create state directory: %w", err)
	}
	certPEM, keyPEM, err := Generate(hosts, now)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("tls: store key: %w", err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("tls: store certificate: %w", err)
	}
	c, err := LoadFiles(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	c.SelfSigned, c.Generated = true, true
	return c, nil
}

// Generate makes a self-signed ECDSA P-256 certificate for hosts (names and IP addresses)
// and returns it and its key as PEM.
func Generate(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("tls: no host names for the certificate")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("tls: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"camhub self-signed"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// A CA of itself, so that clients can trust the file as a root (SSL_CERT_FILE).
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// Fingerprint is the SHA-256 of a DER certificate as colon-separated hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// LocalHosts are the names and addresses this machine is reached at: localhost, the host
// name, and every interface address (link-local ones excepted).
func LocalHosts() []string {
	hosts := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append(hosts, h)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
			hosts = append(hosts, n.IP.String())
		}
	}
	return hosts
}

func hostsOf(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func covers(have, want []string) bool {
	for _, w := range want {
		if ip := net.ParseIP(w); ip != nil {
			w = ip.String()
		}
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}
