package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Secret resolves a secret setting that may be given inline (value), as a file to read
// (file, e.g. one only root or the service user can read), or as a systemd credential named
// credential in credDir ($CREDENTIALS_DIRECTORY, see LoadCredential= in systemd.exec(5)).
// Setting both value and file is an error; the credential is used only when neither is set.
// Trailing newlines of files are dropped.
func Secret(key, value, file, credential, credDir string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("%s and %sFile are both set; keep one", key, key)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%sFile: %w", key, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case value != "":
		return value, nil
	case credDir != "" && credential != "":
		b, err := os.ReadFile(filepath.Join(credDir, credential))
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("%s: systemd credential %s: %w", key, credential, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}

// RootsWithFile returns the system's root certificates plus those in the PEM file (for a
// private CA, or a peer's self-signed certificate). key names the setting in errors.
func RootsWithFile(key, file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, file)
	}
	return pool, nil
}
