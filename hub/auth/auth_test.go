package auth

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCredentialForm(t *testing.T) {
	text, id, hash := newCredential(KindKey)
	c, err := parseCredential(text)
	if err != nil || c.keyID != id || !secretMatches(c.secret, hash) || KeyIDOf(text) != id {
		t.Fatalf("round trip of %q: %+v %v", text, c, err)
	}
	if len(text) < 50 || !strings.HasPrefix(text, "cam_k_") {
		t.Fatalf("form %q", text)
	}
	for _, bad := range []string{"", "k", "cam_k_", "cam_x_00000000_" + strings.Repeat("A", 43), "cam_k_zzzzzzzz_" + strings.Repeat("A", 43),
		"cam_k_00000000_short", text + "x", strings.Replace(text, "_", "-", 1)} {
		if _, err := parseCredential(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if secretMatches(c.secret+"x", hash) {
		t.Fatal("a different secret matched")
	}
}

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || !CheckPassword(h, "correct horse battery") || CheckPassword(h, "correct horse batterx") {
		t.Fatalf("hash %q", h)
	}
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", "$bcrypt$x$y$z$w"} {
		if CheckPassword(bad, "whatever1234") {
			t.Errorf("%q checked", bad)
		}
	}
}

func TestStoreAndPrincipals(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login("admin", "whatever-12"); !errors.Is(err, ErrNoUsers) {
		t.Fatalf("login before any user: %v", err)
	}
	if err := s.AddUser("admin", "admin-password", true, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("guest", "guest-password", false, map[string][]string{"porch": {PermView}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("guest", "guest-password", false, nil); err == nil {
		t.Fatal("a second guest was added")
	}
	if err := s.AddUser("bad name", "guest-password", false, nil); err == nil {
		t.Fatal("a name with a space was accepted")
	}
	if err := s.AddUser("x", "guest-password", false, map[string][]string{"porch": {"root"}}); err == nil {
		t.Fatal("an unknown permission was accepted")
	}
	st, _ := os.Stat(s.Path())
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v", st.Mode().Perm())
	}
	b, _ := os.ReadFile(s.Path())
	if strings.Contains(string(b), "guest-password") {
		t.Fatal("a password is in the file")
	}

	if _, err := s.Login("guest", "wrong-password"); !errors.Is(err, ErrLogin) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.Login("nobody", "guest-password"); !errors.Is(err, ErrLogin) {
		t.Fatalf("unknown user: %v", err)
	}
	guest, err := s.Login("guest", "guest-password")
	if err != nil {
		t.Fatal(err)
	}
	if !guest.Can("porch", PermView) || guest.Can("porch", PermTalk) || guest.Can("porch", PermCommand) || guest.Can("garage", PermView) || guest.Admin() {
		t.Fatalf("guest permissions: %v", guest.Permissions("porch"))
	}
	if err := guest.MayMint(MintRequest{App: "demo", Channel: "c", UID: 5, TTL: time.Minute}); err == nil {
		t.Fatal("a person without admin minted a token")
	}
	admin, _ := s.Login("admin", "admin-password")
	if !admin.Can("anything", PermTalk) || admin.MayMint(MintRequest{App: "demo", Channel: "c", UID: 5, Publishes: true, TTL: time.Hour}) != nil {
		t.Fatal("admin is not all-powerful")
	}
	if admin.MayMint(MintRequest{App: "demo", Channel: "c", UID: 0, Publishes: true, TTL: time.Hour}) == nil {
		t.Fatal("a wildcard publishing token was allowed")
	}

	// Devices: own uid only; the credential is checked against the id it logs in as.
	cred, dev, err := s.AddDevice("porch", 0)
	if err != nil || dev.UID != DefaultUID("porch") {
		t.Fatal(dev, err)
	}
	p, err := s.Bearer(cred)
	if err != nil || p.Kind != PrincipalDevice || p.Name != "porch" {
		t.Fatal(p, err)
	}
	if p.MayMint(MintRequest{App: "demo", Channel: "any", UID: dev.UID, Publishes: true, TTL: time.Hour}) != nil ||
		p.MayMint(MintRequest{App: "demo", Channel: "any", UID: dev.UID + 1, Publishes: true, TTL: time.Hour}) == nil {
		t.Fatal("device token rules")
	}
	if p.Can("porch", PermView) || p.CanCommand("porch", "leave") {
		t.Fatal("a device has permissions on itself")
	}
	if _, ok := s.DeviceLogin("garage", cred); ok {
		t.Fatal("porch's credential logged in as garage")
	}
	if _, ok := s.DeviceLogin("porch", cred); !ok {
		t.Fatal("porch cannot log in")
	}
	if _, _, err := s.AddDevice("porch", 0); err == nil {
		t.Fatal("porch enrolled twice")
	}

	// Keys: scoped to devices, actions, Apps, channels and a lifetime.
	text, k, err := s.AddKey(Key{Name: "ha", Devices: []string{"porch"}, Actions: []string{"status", PermView, ActionToken},
		Apps: []string{"demo"}, Channels: []string{"ha-*"}, MaxTTL: Duration(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := s.Bearer(text)
	if err != nil || kp.CredID != k.ID {
		t.Fatal(kp, err)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"status on porch", kp.CanCommand("porch", "status")},
		{"!join on porch", !kp.CanCommand("porch", "join")},
		{"!status on garage", !kp.CanCommand("garage", "status")},
		{"view porch", kp.Can("porch", PermView)},
		{"!talk porch", !kp.Can("porch", PermTalk)},
		{"mint ha-1", kp.MayMint(MintRequest{App: "demo", Channel: "ha-1", UID: 9, Publishes: true, TTL: 5 * time.Minute}) == nil},
		{"!mint other channel", kp.MayMint(MintRequest{App: "demo", Channel: "lobby", UID: 9, TTL: 5 * time.Minute}) != nil},
		{"!mint other app", kp.MayMint(MintRequest{App: "other", Channel: "ha-1", UID: 9, TTL: 5 * time.Minute}) != nil},
		{"!mint too long", kp.MayMint(MintRequest{App: "demo", Channel: "ha-1", UID: 9, TTL: time.Hour}) != nil},
		{"!metrics", !kp.CanMetrics()},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("key: %s", c.what)
		}
	}
	if _, ok := s.KeyLogin(k.ID, text); ok {
		t.Fatal("a key without mqtt logged in to MQTT")
	}
	if _, _, err := s.AddKey(Key{Name: "x", Actions: []string{"sudo"}}); err == nil {
		t.Fatal("an unknown action was accepted")
	}
	if _, _, err := s.AddKey(Key{Name: "x", Actions: []string{"view"}, MaxTTL: Duration(48 * time.Hour)}); err == nil {
		t.Fatal("a 48 h key was accepted")
	}

	// Another process (the CLI) revokes: this store sees it within a second.
	other, _ := Open(dir)
	if err := other.DeleteKey("ha"); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteDevice("porch"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.Bearer(text); err == nil {
		t.Fatal("a deleted key still works")
	}
	if _, err := s.Bearer(cred); err == nil {
		t.Fatal("a deleted device credential still works")
	}
}

func TestSessions(t *testing.T) {
	s, _ := Open(t.TempDir())
	s.AddUser("alice", "alice-password", false, nil)
	p, _ := s.Login("alice", "alice-password")
	ss := NewSessions(s)
	cookie, csrf := ss.New(p)
	got, gotCSRF, ok := ss.Lookup(cookie)
	if !ok || got.Name != "alice" || gotCSRF != csrf {
		t.Fatal("lookup")
	}
	if _, _, ok := ss.Lookup(cookie + "x"); ok {
		t.Fatal("a wrong cookie worked")
	}
	// A new password ends the session.
	pw := "another-password"
	if err := s.SetUser("alice", UserChange{Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := ss.Lookup(cookie); ok {
		t.Fatal("a session outlived a password change")
	}
	p, _ = s.Login("alice", pw)
	cookie, _ = ss.New(p)
	now := time.Now()
	ss.now = func() time.Time { return now.Add(SessionIdle + time.Minute) }
	if _, _, ok := ss.Lookup(cookie); ok {
		t.Fatal("an idle session lived on")
	}
}
