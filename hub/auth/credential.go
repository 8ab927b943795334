// Package auth holds the hub's identities and what each may do: people (who log in to the
// pages, with per-device permissions), devices (one credential each, made at enrolment) and
// integration API keys (scoped to devices, actions, Apps and a token lifetime), kept in one
// file in the hub's state directory; the web sessions of logged-in people; and the decisions
// made from them (Principal.Can, Principal.MayMint).
//
// Secrets are never stored: passwords as argon2id hashes, credentials (random 256-bit
// secrets) as SHA-256 hashes, compared in constant time. A credential names its key id, which
// is public and is what logs show.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// Credential kinds, the letter after "cam_".
const (
	KindDevice = "d"
	KindKey    = "k"
)

// ErrMalformed is a bearer value that is not a camagent credential.
var ErrMalformed = errors.New("auth: not a camagent credential (cam_d_… or cam_k_…)")

// credential is the parsed form of cam_<kind>_<keyid>_<secret>.
type credential struct {
	kind, keyID, secret string
}

// newCredential makes a credential of kind with a fresh key id and 32-byte secret; it returns
// the text (shown once) and the stored hash of its secret.
func newCredential(kind string) (text, keyID, hash string) {
	id := make([]byte, 4)
	rand.Read(id)
	sec := make([]byte, 32)
	rand.Read(sec)
	keyID = hex.EncodeToString(id)
	secret := base64.RawURLEncoding.EncodeToString(sec)
	return "cam_" + kind + "_" + keyID + "_" + secret, keyID, hashSecret(secret)
}

// parseCredential splits a credential's text; it checks the form only.
func parseCredential(text string) (credential, error) {
	rest, ok := strings.CutPrefix(text, "cam_")
	if !ok || len(rest) < 2+8+1+43 || rest[1] != '_' || rest[10] != '_' {
		return credential{}, ErrMalformed
	}
	c := credential{kind: rest[:1], keyID: rest[2:10], secret: rest[11:]}
	if c.kind != KindDevice && c.kind != KindKey {
		return credential{}, ErrMalformed
	}
	if _, err := hex.DecodeString(c.keyID); err != nil {
		return credential{}, ErrMalformed
	}
	if b, err := base64.RawURLEncoding.DecodeString(c.secret); err != nil || len(b) != 32 {
		return credential{}, ErrMalformed
	}
	return c, nil
}

// KeyIDOf returns the public key id of a credential's text, or "" when it is not one: what a
// log line may show of a presented credential.
func KeyIDOf(text string) string {
	c, err := parseCredential(text)
	if err != nil {
		return ""
	}
	return c.keyID
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// secretMatches compares a presented secret with a stored hash in constant time.
func secretMatches(secret, hash string) bool {
	got := hashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1
}
