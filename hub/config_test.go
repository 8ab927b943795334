package hub

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTURNSecretCredential: the TURN secret comes from the systemd credential turnSecret
// unless the configuration names one (inline or as a file).
func TestTURNSecretCredential(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "turnSecret"), []byte("from-the-credential-0123\n"), 0o600)
	c := Defaults()
	if err := c.ResolveSecrets(dir); err != nil {
		t.Fatal(err)
	}
	if c.Network.TURN.Secret != "from-the-credential-0123" {
		t.Errorf("secret %q, want the credential's", c.Network.TURN.Secret)
	}
	c = Defaults()
	c.Network.TURN.Secret = "from-the-configuration-01"
	if err := c.ResolveSecrets(dir); err != nil {
		t.Fatal(err)
	}
	if c.Network.TURN.Secret != "from-the-configuration-01" {
		t.Errorf("secret %q, want the configuration's", c.Network.TURN.Secret)
	}
}
