package hub

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/netconf"
	"github.com/camagent/camagent/internal/freeport"
)

// pebbleVersion is Let's Encrypt's test ACME CA, built from the Go module proxy.
const pebbleVersion = "v2.10.1"

// startPebble builds and runs pebble on loopback ports, accepting every challenge (the CA
// cannot reach a test's names). It returns the directory URL, the PEM file of the root that
// pebble's own HTTPS chains to, and the URL of the root it issues under.
func startPebble(t *testing.T) (directory, httpsRoot, issuingRoot string) {
	t.Helper()
	tools, err := filepath.Abs("../.cache/tools")
	if err != nil {
		t.Fatal(err)
	}
	mod := "github.com/letsencrypt/pebble/v2"
	bin := filepath.Join(tools, "pebble-"+pebbleVersion)
	if _, err := os.Stat(bin); err != nil {
		gobin := t.TempDir()
		cmd := exec.Command("go", "install", mod+"/cmd/pebble@"+pebbleVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build pebble %s (from the Go module proxy): %v\n%s", pebbleVersion, err, out)
		}
		os.MkdirAll(tools, 0o755)
		if err := os.Rename(filepath.Join(gobin, "pebble"), bin); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("go", "mod", "download", "-json", mod+"@"+pebbleVersion).Output()
	if err != nil {
		t.Fatalf("go mod download pebble: %v", err)
	}
	var m struct{ Dir string }
	json.Unmarshal(out, &m)
	certs := filepath.Join(m.Dir, "test", "certs")

	api, mgmt := freeTCP(t), freeTCP(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": api, "managementListenAddress": mgmt,
		"certificate": filepath.Join(certs, "localhost", "cert.pem"), "privateKey": filepath.Join(certs, "localhost", "key.pem"),
		"httpPort": 5002, "tlsPort": 5001, "retryAfter": map[string]int{"authz": 1, "order": 1},
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(t.TempDir(), "pebble.json")
	os.WriteFile(cfgFile, b, 0o600)
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	logs, err := os.Create(filepath.Join(t.TempDir(), "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logs.Close()
		if b, _ := os.ReadFile(logs.Name()); t.Failed() {
			t.Logf("pebble:\n%s", b)
		}
	})
	httpsRoot = filepath.Join(certs, "pebble.minica.pem")
	client := trusting(t, httpsRoot)
	directory = "https://" + api + "/dir"
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := client.Get(directory); err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("pebble did not answer at %s", directory)
		}
	}
	return directory, httpsRoot, "https://" + mgmt + "/roots/0"
}

// TestACME: with network.acme, a client asking for the ACME name gets a certificate the CA
// issued (obtained on that first handshake), and one reaching the hub by its address gets
// the self-signed certificate, as before.
func TestACME(t *testing.T) {
	directory, httpsRoot, rootURL := startPebble(t)
	const name = "hub.camagent.test"
	cfg := Defaults()
	cfg.Listen, cfg.MQTTListen, cfg.StateDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.Network.ACME = netconf.ACME{Domains: []string{name}, Directory: directory, DirectoryCAFile: httpsRoot}
	h := runTestHub(t, cfg, 15*time.Second)

	resp, err := trusting(t, httpsRoot).Get(rootURL)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("pebble's root: %q", pem)
	}
	start := time.Now()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", h.Addr(), &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS to %s as %s, trusting the ACME CA: %v", h.Addr(), name, err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	t.Logf("certificate for %v from %q in %s (issuance on the first handshake)", leaf.DNSNames, leaf.Issuer.CommonName, time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "acme", name)); err != nil {
		t.Errorf("the certificate is not cached in the state directory: %v", err)
	}

	conn, err = tls.Dial("tcp", h.Addr(), &tls.Config{InsecureSkipVerify: true}) // by address: no SNI
	if err != nil {
		t.Fatal(err)
	}
	other := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if other.Issuer.String() != other.Subject.String() {
		t.Errorf("a client without the ACME name got %q from %q, want the self-signed certificate", other.Subject, other.Issuer)
	}
}

// trusting is an HTTP client that trusts the roots in a PEM file.
func trusting(t *testing.T, pemFile string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func freeTCP(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}
