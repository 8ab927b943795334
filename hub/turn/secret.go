package turn

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SecretFile is the name of the generated secret in the state directory.
const SecretFile = "turn-secret"

// LoadSecret resolves the shared secret: value when set, else the contents of file when set,
// else the secret kept in dir (generated there on first use).
func LoadSecret(value, file, dir string) (string, error) {
	switch {
	case value != "":
		return value, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("turn: read secret: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if len(s) < 16 {
			return "", fmt.Errorf("turn: secret in %s is shorter than 16 characters", file)
		}
		return s, nil
	}
	path := filepath.Join(dir, SecretFile)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("turn: create state directory: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	s := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("turn: store secret: %w", err)
	}
	return s, nil
}
