package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const cert = "0123456789abcdef0123456789abcdef"

func certs(app string) (string, bool) {
	switch app {
	case "demo":
		return cert, true
	case "other":
		return "another-certificate-of-32-chars!", true
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
		{"tampered", tampered, "demo", "garage", 7, "", ReasonBadSignature},
		{"other certificate", sign(base, "a-different-certificate-32-chars"), "demo", "porch", 7, "", ReasonBadSignature},
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
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s, certs)
		if err == nil && c == nil {
			t.Fatal("nil claims without error")
		}
	})
}
