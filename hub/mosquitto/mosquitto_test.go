package mosquitto

import (
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/camagent/camagent/hub/auth"
)

func TestPasswordFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte("admin:$7$101$abc$def\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := AddPassword(path, "porch", "cam_d_secret"); err != nil {
		t.Fatal(err)
	}
	if err := AddPassword(path, "porch", "other"); err == nil {
		t.Error("a second login for porch was added")
	}
	if err := SetPassword(path, "porch", "cam_d_new"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "admin:$7$101$abc$def" || !strings.HasPrefix(lines[1], "porch:$7$") {
		t.Fatalf("password file:\n%s", b)
	}
	// The entry verifies the new secret the way Mosquitto does.
	f := strings.Split(strings.TrimPrefix(lines[1], "porch:"), "$")
	salt, _ := base64.StdEncoding.DecodeString(f[3])
	want, _ := base64.StdEncoding.DecodeString(f[4])
	got, _ := pbkdf2.Key(sha512.New, "cam_d_new", salt, iterations, sha512.Size)
	if f[2] != "1000" || len(salt) != 12 || string(got) != string(want) {
		t.Errorf("entry %q does not verify", lines[1])
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode became %v", fi.Mode().Perm())
	}
	if err := RemoveUser(path, "porch"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "admin:$7$101$abc$def\n" {
		t.Errorf("after RemoveUser:\n%s", b)
	}
	for _, bad := range []string{"", "a:b", "a/b", "#", "+", "$SYS", "a b"} {
		if err := SetPassword(path, bad, "x"); err == nil {
			t.Errorf("user %q accepted", bad)
		}
	}
	if err := RemoveUser(filepath.Join(t.TempDir(), "none"), "x"); err != nil {
		t.Errorf("removing from a missing file: %v", err)
	}
}

func TestACL(t *testing.T) {
	acl, err := ACL(ACLOptions{Prefix: "camagent", HAPrefix: "homeassistant", HubUser: "camhub", Keys: []auth.Key{
		{ID: "0a1b2c3d", Name: "ha", Devices: []string{"porch"}, MQTT: true},
		{ID: "ffffffff", Name: "fleet", Devices: []string{"*"}, MQTT: true},
		{ID: "11111111", Name: "http-only", Devices: []string{"*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"pattern read camagent/%u/cmd\n", "pattern write camagent/%u/reply\n", "pattern write camagent/%u/snapshot\n",
		"pattern write homeassistant/+/%u/+/config\n",
		"user camhub\ntopic read camagent/#\ntopic write camagent/+/cmd\n",
		"user 0a1b2c3d\ntopic readwrite homeassistant/status\ntopic read camagent/porch/#\ntopic write camagent/porch/cmd\n",
		"user ffffffff\ntopic readwrite homeassistant/status\ntopic read camagent/#\ntopic write camagent/+/cmd\n",
	} {
		if !strings.Contains(acl, want) {
			t.Errorf("ACL lacks %q:\n%s", want, acl)
		}
	}
	if strings.Contains(acl, "11111111") || strings.Contains(acl, "pattern readwrite") || strings.Contains(acl, "pattern write camagent/+") {
		t.Errorf("ACL grants too much:\n%s", acl)
	}
	for _, o := range []ACLOptions{{Prefix: "", HubUser: "camhub"}, {Prefix: "cam/#", HubUser: "camhub"}, {Prefix: "camagent", HubUser: "a b"}} {
		if _, err := ACL(o); err == nil {
			t.Errorf("ACL accepted %+v", o)
		}
	}
}
