package control

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names the files of an MQTT TLS connection, as a configuration
// gives them. All are optional: an empty CAFile trusts the system roots, and
// a client certificate is sent only when CertFile and KeyFile are both set.
type TLSFiles struct {
	CAFile     string // PEM CA certificate(s) that sign the broker's certificate
	CertFile   string // PEM client certificate, for brokers that require one
	KeyFile    string // PEM private key of CertFile
	ServerName string // name to verify in the broker's certificate; default the URL's host
	// InsecureSkipVerify accepts any broker certificate. For experiments only.
	InsecureSkipVerify bool
}

// Empty reports whether no TLS setting is given.
func (f TLSFiles) Empty() bool { return f == TLSFiles{} }

// Config reads the files and returns a TLS configuration for Options.TLS.
// Errors name the file that could not be used (never its contents).
func (f TLSFiles) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.InsecureSkipVerify,
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("control: MQTT CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("control: MQTT CA file %s: no PEM certificate in it", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile != "" && f.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("control: MQTT client certificate %s / key %s: %w", f.CertFile, f.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.CertFile != "" || f.KeyFile != "":
		return nil, errors.New("control: MQTT client certificate and key must be given together")
	}
	return cfg, nil
}
