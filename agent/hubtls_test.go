package agent

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/tlsconf"
)

// TestHubCA: with hubCA naming a hub's self-signed certificate the agent's HTTP client reaches
// the hub; without it the same request fails verification; a file without a certificate is a
// configuration error.
func TestHubCA(t *testing.T) {
	dir := t.TempDir()
	cert, err := tlsconf.SelfSigned(dir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	srv.TLS = cert.Config()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	ca := cert.CertPath

	trusted, err := HubHTTPClient(ca, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := trusted.Get(srv.URL)
	if err != nil {
		t.Fatalf("with hubCA: %v", err)
	}
	resp.Body.Close()
	plain, _ := HubHTTPClient("", 5*time.Second)
	if resp, err := plain.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("without hubCA the self-signed hub was trusted")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without hubCA: %v, want a certificate error", err)
	}

	bad := filepath.Join(dir, tlsconf.KeyFile)
	for _, f := range []string{bad, filepath.Join(dir, "missing.pem")} {
		cfg := Defaults()
		cfg.HubCA = f
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "hubCA") {
			t.Errorf("hubCA %s: %v, want a hubCA error", filepath.Base(f), err)
		}
	}
}
