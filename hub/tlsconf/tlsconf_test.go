package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSelfSignedKeptAndRenewed(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	c1, err := SelfSigned(dir, []string{"localhost", "127.0.0.1", "hub.lan"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !c1.Generated || !c1.SelfSigned || len(c1.Fingerprint) != 95 {
		t.Fatalf("first start: %+v", c1)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	c2, err := SelfSigned(dir, []string{"hub.lan", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Generated || c2.Fingerprint != c1.Fingerprint {
		t.Fatal("second start did not keep the certificate")
	}
	c3, err := SelfSigned(dir, []string{"hub.lan", "10.1.2.3"}, now)
	if err != nil || !c3.Generated {
		t.Fatalf("a new address did not renew the certificate: %v", err)
	}
	c4, err := SelfSigned(dir, []string{"hub.lan"}, now.Add(Lifetime-RenewBefore/2))
	if err != nil || !c4.Generated {
		t.Fatalf("a certificate near its expiry was not renewed: %v", err)
	}
}

// A client that trusts the certificate file (as an agent with SSL_CERT_FILE does) verifies
// the hub at its IP address.
func TestSelfSignedVerifies(t *testing.T) {
	c, err := SelfSigned(t.TempDir(), []string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = c.Config()
	srv.StartTLS()
	defer srv.Close()
	pemBytes, _ := os.ReadFile(c.CertPath)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resp, err := cl.Get("https://127.0.0.1:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := http.Get("https://127.0.0.1:" + port + "/"); err == nil {
		t.Fatal("a client without the certificate trusted it")
	}
}
