package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNATSUsers: camhub nats passwd and users write the block for the enrolled devices that
// have an entry, and name those left out.
func TestNATSUsers(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	for _, id := range []string{"porch", "garden"} {
		if code := run([]string{"device", "add", id, "--state-dir", dir}, nil, &out, &errb); code != 0 {
			t.Fatalf("device add %s: %d %s", id, code, errb.String())
		}
	}
	cred := filepath.Join(dir, "cred")
	if err := os.WriteFile(cred, []byte("cam_d_x_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "nats-passwd")
	for _, u := range []string{"porch", "camhub"} {
		if code := run([]string{"nats", "passwd", pw, u, "--password-file", cred}, nil, &out, &errb); code != 0 {
			t.Fatalf("nats passwd %s: %d %s", u, code, errb.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"nats", "users", "--passwd", pw, "--state-dir", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("nats users: %d %s", code, errb.String())
	}
	for _, want := range []string{`user: "porch"`, `user: "camhub"`, `"camagent.porch.cmd"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("users lack %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "garden") || !strings.Contains(errb.String(), "garden has no entry") {
		t.Errorf("garden (no entry) not left out: %s / %s", out.String(), errb.String())
	}
	if strings.Contains(out.String(), "cam_d_x_secret") {
		t.Error("the credential itself is in the block")
	}
}
