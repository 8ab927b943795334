package auth

import (
	"strings"
	"testing"
)

// FuzzParseCredential: any bearer value an attacker sends parses or is refused, never panics,
// and what parses has the documented form.
func FuzzParseCredential(f *testing.F) {
	text, _, _ := newCredential(KindDevice)
	f.Add(text)
	f.Add("cam_k_00000000_" + strings.Repeat("A", 43))
	f.Add("cam_d__")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCredential(s)
		if err != nil {
			if KeyIDOf(s) != "" {
				t.Fatal("a refused credential has a key id")
			}
			return
		}
		if c.kind != KindDevice && c.kind != KindKey || len(c.keyID) != 8 || "cam_"+c.kind+"_"+c.keyID+"_"+c.secret != s {
			t.Fatalf("%q parsed as %+v", s, c)
		}
	})
}

// FuzzParsePHC: a stored password hash, tampered or not, parses within the cost bounds or is
// refused.
func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$AAAA$AAAA")
	f.Add("$$$$$")
	f.Fuzz(func(t *testing.T, s string) {
		ph, ok := parsePHC(s)
		if ok && (ph.memory > 256*1024 || ph.time > 16 || ph.threads == 0 || len(ph.key) < 16) {
			t.Fatalf("%q parsed with costly or empty parameters %+v", s, ph)
		}
	})
}
