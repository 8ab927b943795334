// Package turn is the hub's TURN side: the time-limited credentials it hands to clients
// (the "TURN REST" scheme coturn implements as use-auth-secret/static-auth-secret) and an
// optional embedded TURN server (pion/turn) that checks them with the same secret.
//
// A credential is username "<expiry unix seconds>:<name>" and password
// base64(HMAC-SHA1(secret, username)). Anyone holding the secret can mint and check them, so
// the hub and any number of TURN servers share one secret and nothing else.
package turn

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Credential is one time-limited TURN username and password.
type Credential struct {
	Username string
	Password string
	Expires  time.Time
}

// Errors of Check.
var (
	ErrMalformed = errors.New("turn: username is not <expiry>:<name>")
	ErrExpired   = errors.New("turn: credential expired")
)

// Mint returns a credential for name valid from now for ttl.
func Mint(secret, name string, ttl time.Duration, now time.Time) Credential {
	exp := now.Add(ttl).Truncate(time.Second)
	user := strconv.FormatInt(exp.Unix(), 10)
	if name != "" {
		user += ":" + name
	}
	return Credential{Username: user, Password: Password(secret, user), Expires: exp}
}

// MintUntil is Mint with the expiry capped at until (zero: no cap): the credential a user gets
// must not outlive the token it was handed out for.
func MintUntil(secret, name string, ttl time.Duration, until, now time.Time) Credential {
	if !until.IsZero() {
		ttl = min(ttl, until.Sub(now))
	}
	return Mint(secret, name, ttl, now)
}

// Password is the password that goes with username under secret.
func Password(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Expiry parses the expiry out of a username.
func Expiry(username string) (time.Time, error) {
	ts, _, _ := strings.Cut(username, ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, ErrMalformed
	}
	return time.Unix(n, 0), nil
}

// Check verifies a username and password at now: the password must match and the expiry
// must not have passed.
func Check(secret, username, password string, now time.Time) error {
	exp, err := Expiry(username)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(Password(secret, username)), []byte(password)) != 1 {
		return errors.New("turn: wrong password")
	}
	if !now.Before(exp) {
		return fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	return nil
}
