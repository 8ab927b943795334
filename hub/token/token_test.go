package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	cert = "0123456789abcdef0123456789abcdef"
	// previous is demo's certificate before the last rotation, still accepted.
	previous = "the-previous-certificate-32chars"
)

func certs(app, kid string) (string, bool) {
	switch app {
	case "demo":
		return Match(kid, cert, previous)
	case "other":
		return Match(kid, "another-certificate-of-32-chars!")
	}
	return "", false
}

func TestTokenRefusals(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good, _, err := Mint("demo", cert, "porch", 7, RolePublisher, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(c Claims, certificate string) string {
		tok, err := Sign(c, certificate)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	base := Claims{AppID: "demo", Channel: "porch", UID: 7, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(),
		Privileges: []string{PrivJoin, PrivPublishAudio, PrivPublishVideo, PrivSubscribe}}
	with := func(f func(*Claims)) Claims { c := base; f(&c); return c }
	tampered := func() string {
		// Same signature, claims for another channel.
		other := sign(with(func(c *Claims) { c.Channel = "garage" }), cert)
		return other[:strings.LastIndexByte(other, '.')] + good[strings.LastIndexByte(good, '.'):]
	}()

	// The same signature with one of the two unused low bits of its last character set:
	// decodes to the same bytes unless the decoder is strict, so one token would have
	// several spellings.
	aliased := func() string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		last := strings.IndexByte(alphabet, good[len(good)-1])
		return good[:len(good)-1] + string(alphabet[last^1])
	}()

	cases := []struct {
		name  string
		token string
		app   string
		ch    string
		uid   uint32
		priv  string
		want  Reason
	}{
		{"valid", good, "demo", "porch", 7, "", 0},
		{"valid publish", good, "demo", "porch", 7, PrivPublishVideo, 0},
		{"empty", "", "demo", "porch", 7, "", ReasonMissing},
		{"not ours", "eyJhbGciOi.abc.def", "demo", "porch", 7, "", ReasonMalformed},
		{"no signature", "cam1.abc", "demo", "porch", 7, "", ReasonMalformed},
		{"bad base64", "cam1.@@@.abc", "demo", "porch", 7, "", ReasonMalformed},
		{"expired", sign(with(func(c *Claims) { c.ExpiresAt = now.Add(-time.Second).Unix() }), cert), "demo", "porch", 7, "", ReasonExpired},
		{"expires now", sign(with(func(c *Claims) { c.ExpiresAt = now.Unix() }), cert), "demo", "porch", 7, "", ReasonExpired},
		{"not yet valid", sign(with(func(c *Claims) { c.NotBefore = now.Add(time.Minute).Unix() }), cert), "demo", "porch", 7, "", ReasonNotYetValid},
		{"wrong app", sign(with(func(c *Claims) { c.AppID = "other" }), "another-certificate-of-32-chars!"), "demo", "porch", 7, "", ReasonWrongApp},
		{"unknown app", sign(with(func(c *Claims) { c.AppID = "nope" }), cert), "demo", "porch", 7, "", ReasonUnknownApp},
		{"wrong channel", good, "demo", "garage", 7, "", ReasonWrongChannel},
		{"wrong uid", good, "demo", "porch", 8, "", ReasonWrongUID},
		{"any uid", sign(with(func(c *Claims) { c.UID = 0 }), cert), "demo", "porch", 12345, "", 0},
		{"wrong role", sign(with(func(c *Claims) { c.Privileges = []string{PrivJoin, PrivSubscribe} }), cert), "demo", "porch", 7, PrivPublishAudio, ReasonNoPrivilege},
		{"no join", sign(with(func(c *Claims) { c.Privileges = []string{PrivSubscribe} }), cert), "demo", "porch", 7, "", ReasonNoPrivilege},
		{"signature spelt another way", aliased, "demo", "porch", 7, "", ReasonMalformed},
		{"tampered", tampered, "demo", "garage", 7, "", ReasonBadSignature},
		{"other certificate", sign(base, "a-different-certificate-32-chars"), "demo", "porch", 7, "", ReasonBadSignature},
		{"previous certificate", sign(base, previous), "demo", "porch", 7, PrivPublishAudio, 0},
		{"no kid, current certificate", noKID(t, base, cert), "demo", "porch", 7, "", 0},
		{"no kid, previous certificate", noKID(t, base, previous), "demo", "porch", 7, "", ReasonBadSignature},
		{"kid of another certificate", withKID(t, base, cert, KeyID(previous)), "demo", "porch", 7, "", ReasonBadSignature},
		{"unknown kid", withKID(t, base, cert, "0011223344556677"), "demo", "porch", 7, "", ReasonBadSignature},
		{"wildcard publish", sign(with(func(c *Claims) { c.UID = 0 }), cert), "demo", "porch", 12345, PrivPublishVideo, ReasonNoPrivilege},
		{"wildcard subscribe", sign(with(func(c *Claims) { c.UID = 0 }), cert), "demo", "porch", 12345, PrivSubscribe, 0},
		{"ten years", sign(with(func(c *Claims) { c.ExpiresAt = now.Add(10 * 365 * 24 * time.Hour).Unix() }), cert), "demo", "porch", 7, "", ReasonTooLong},
		{"a day", sign(with(func(c *Claims) { c.ExpiresAt = now.Add(MaxLifetime).Unix() }), cert), "demo", "porch", 7, "", 0},
		{"issued in the future", sign(with(func(c *Claims) {
			c.IssuedAt = now.Add(9 * 365 * 24 * time.Hour).Unix()
			c.ExpiresAt = c.IssuedAt + 3600
		}), cert), "demo", "porch", 7, "", ReasonTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.token, certs)
			if err == nil {
				err = c.Check(tc.app, tc.ch, tc.uid, tc.priv, now)
			}
			var te *Error
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == 0:
			case !errors.As(err, &te):
				t.Fatalf("got %v, want refusal %d", err, tc.want)
			case te.Reason != tc.want:
				t.Fatalf("reason %d (%v), want %d", te.Reason, err, tc.want)
			}
		})
	}
}

// noKID signs c the old way, without a key id.
func noKID(t *testing.T, c Claims, certificate string) string { return withKID(t, c, certificate, "") }

// withKID signs c with certificate but claims key id kid.
func withKID(t *testing.T, c Claims, certificate, kid string) string {
	t.Helper()
	c.KeyID = kid
	body, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	payload := prefix + base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(certificate, payload))
}

func TestKeyID(t *testing.T) {
	if k := KeyID(cert); len(k) != 16 || k == KeyID(previous) {
		t.Fatalf("key ids %q %q", k, KeyID(previous))
	}
	tok, c, err := Mint("demo", previous, "porch", 7, RoleSubscriber, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyID != KeyID(previous) {
		t.Fatalf("minted kid %q, want %q", c.KeyID, KeyID(previous))
	}
	parsed, err := Parse(tok, certs)
	if err != nil || parsed.KeyID != KeyID(previous) {
		t.Fatalf("parse: %+v %v", parsed, err)
	}
	if strings.Contains(tok, previous) {
		t.Fatal("the token contains the certificate")
	}
	if _, ok := Match("", ""); ok {
		t.Fatal("an empty certificate matched")
	}
}

func TestMintRefusals(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		uid   uint32
		privs []string
		ttl   time.Duration
		ok    bool
	}{
		{"talk but not show", 7, []string{PrivJoin, PrivSubscribe, PrivPublishAudio}, time.Hour, true},
		{"watch only, any uid", 0, []string{PrivJoin, PrivSubscribe}, time.Hour, true},
		{"wildcard audio", 0, []string{PrivJoin, PrivPublishAudio}, time.Hour, false},
		{"wildcard video", 0, []string{PrivJoin, PrivSubscribe, PrivPublishVideo}, time.Hour, false},
		{"no join", 7, []string{PrivSubscribe}, time.Hour, false},
		{"unknown privilege", 7, []string{PrivJoin, "admin"}, time.Hour, false},
		{"too long", 7, []string{PrivJoin}, MaxLifetime + time.Second, false},
		{"a day", 7, []string{PrivJoin}, MaxLifetime, true},
		{"zero", 7, []string{PrivJoin}, 0, false},
	} {
		tok, c, err := MintPrivileges("demo", cert, "porch", tc.uid, tc.privs, tc.ttl, now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if _, err := Parse(tok, certs); err != nil {
			t.Errorf("%s: parse: %v", tc.name, err)
		}
		if tc.name == "talk but not show" && (!c.Grants(PrivPublishAudio) || c.Grants(PrivPublishVideo)) {
			t.Errorf("%s: privileges %v", tc.name, c.Privileges)
		}
	}
	if _, _, err := Mint("demo", cert, "porch", 0, RolePublisher, time.Hour, now); err == nil {
		t.Error("a wildcard publisher token was minted")
	}
	if _, _, err := Mint("demo", cert, "porch", 0, RoleSubscriber, time.Hour, now); err != nil {
		t.Errorf("a wildcard subscriber token: %v", err)
	}
	if _, _, err := Mint("demo", cert, "porch", 7, RolePublisher, 10*365*24*time.Hour, now); err == nil {
		t.Error("a ten-year token was minted")
	}
	// Grants: a wildcard token (signed by hand, as an old backend might) never publishes.
	c := Claims{UID: 0, Privileges: []string{PrivJoin, PrivPublishAudio, PrivSubscribe}}
	if c.Grants(PrivPublishAudio) || !c.Grants(PrivSubscribe) || !c.Has(PrivPublishAudio) {
		t.Error("Grants lets a wildcard publish")
	}
}

func TestRoles(t *testing.T) {
	p, err := PrivilegesFor(RoleSubscriber)
	if err != nil || len(p) != 2 {
		t.Fatalf("subscriber privileges %v %v", p, err)
	}
	if _, err := PrivilegesFor("admin"); err == nil {
		t.Fatal("unknown role accepted")
	}
	if _, _, err := Mint("demo", cert, "c", 1, RolePublisher, 0, time.Now()); err == nil {
		t.Fatal("zero lifetime accepted")
	}
	if _, err := Sign(Claims{}, ""); err == nil {
		t.Fatal("empty certificate accepted")
	}
}

func FuzzParse(f *testing.F) {
	good, _, _ := Mint("demo", cert, "porch", 7, RolePublisher, time.Hour, time.Now())
	f.Add(good)
	f.Add("cam1..")
	f.Add("cam1.e30.")
	f.Add(noKIDForFuzz())
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s, certs)
		if err == nil && c == nil {
			t.Fatal("nil claims without error")
		}
	})
}

func noKIDForFuzz() string {
	body, _ := json.Marshal(Claims{AppID: "demo", Channel: "porch", UID: 7, Privileges: []string{PrivJoin}, ExpiresAt: 1})
	payload := prefix + base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(cert, payload))
}
