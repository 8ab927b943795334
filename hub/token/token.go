// Package token mints and verifies channel tokens.
//
// A token binds an App ID, a channel, a uid, privileges and a validity window, and is signed
// with the App certificate (HMAC-SHA256). Its text form is
//
//	cam1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(certificate, "cam1."+claims))>
//
// The claims carry a key id ("kid": the first 8 bytes of SHA-256 of the certificate, in hex)
// so that an App certificate can be rotated with overlap: a verifier keeps the previous
// certificates for a while and picks the one the token names. A token without a key id (made
// before key ids existed) is checked against the App's current certificate.
//
// uid 0 in a token is a wildcard: the token admits any free uid (as in the cloud SDKs), but it
// never allows publishing and never takes over a uid another session holds; Mint refuses to
// make a wildcard token that publishes. No token is valid for more than MaxLifetime.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

const prefix = "cam1."

// MaxLifetime is the longest a token may be valid: Mint refuses longer, and Check refuses a
// token that expires later than MaxLifetime from now (plus clockSkew), whoever signed it.
const MaxLifetime = 24 * time.Hour

// clockSkew is how far the signer's clock may run ahead of the verifier's.
const clockSkew = 5 * time.Minute

// Privileges a token may grant.
const (
	PrivJoin         = "join"
	PrivPublishAudio = "publishAudio"
	PrivPublishVideo = "publishVideo"
	PrivSubscribe    = "subscribe"
)

// Roles map to privilege sets.
const (
	RolePublisher  = "publisher"
	RoleSubscriber = "subscriber"
)

// PrivilegesFor returns the privileges of a role, or an error for an unknown role.
func PrivilegesFor(role string) ([]string, error) {
	switch role {
	case RolePublisher, "":
		return []string{PrivJoin, PrivPublishAudio, PrivPublishVideo, PrivSubscribe}, nil
	case RoleSubscriber:
		return []string{PrivJoin, PrivSubscribe}, nil
	}
	return nil, fmt.Errorf("unknown role %q (want publisher or subscriber)", role)
}

// Claims is what a token says.
type Claims struct {
	AppID      string   `json:"app"`
	Channel    string   `json:"ch"`
	UID        uint32   `json:"uid"`
	Privileges []string `json:"priv"`
	IssuedAt   int64    `json:"iat"`
	NotBefore  int64    `json:"nbf,omitempty"`
	ExpiresAt  int64    `json:"exp"`
	// KeyID names the certificate that signed the token (KeyID of it); Sign sets it.
	KeyID string `json:"kid,omitempty"`
}

// KeyID returns the public key id of an App certificate: the first 8 bytes of its SHA-256, hex.
// It names the certificate in tokens and logs without revealing it.
func KeyID(certificate string) string {
	sum := sha256.Sum256([]byte(certificate))
	return hex.EncodeToString(sum[:8])
}

// Match returns the certificate among certificates (the current one first, then previous
// ones still accepted) whose KeyID is kid; kid "" (a token from before key ids) matches the
// current one. It is a ready-made body for a Parse lookup.
func Match(kid string, certificates ...string) (string, bool) {
	if len(certificates) == 0 {
		return "", false
	}
	if kid == "" {
		return certificates[0], certificates[0] != ""
	}
	for _, c := range certificates {
		if c != "" && KeyID(c) == kid {
			return c, true
		}
	}
	return "", false
}

// Has reports whether the claims list privilege p.
func (c *Claims) Has(p string) bool { return slices.Contains(c.Privileges, p) }

// Grants reports whether the claims allow privilege p as used: listed, and for publishing
// bound to a named uid (a wildcard-uid token never publishes).
func (c *Claims) Grants(p string) bool {
	if publishes(p) && c.UID == 0 {
		return false
	}
	return c.Has(p)
}

func publishes(p string) bool { return p == PrivPublishAudio || p == PrivPublishVideo }

// Expiry is the token's expiry time.
func (c *Claims) Expiry() time.Time { return time.Unix(c.ExpiresAt, 0) }

// Sign returns the token text for claims, signed with certificate; it sets the claims' KeyID.
func Sign(c Claims, certificate string) (string, error) {
	if certificate == "" {
		return "", errors.New("token: empty app certificate")
	}
	c.KeyID = KeyID(certificate)
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("token: encode claims: %w", err)
	}
	payload := prefix + base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(certificate, payload)), nil
}

func mac(certificate, payload string) []byte {
	h := hmac.New(sha256.New, []byte(certificate))
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// Reason says why a token was refused; each has its own protocol error code.
type Reason int

const (
	ReasonMissing Reason = iota + 1
	ReasonMalformed
	ReasonBadSignature
	ReasonUnknownApp
	ReasonWrongApp
	ReasonWrongChannel
	ReasonWrongUID
	ReasonExpired
	ReasonNotYetValid
	ReasonNoPrivilege
	// ReasonTooLong: the token is valid for longer than MaxLifetime from now.
	ReasonTooLong
)

// Error is a refused token.
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return "token: " + e.Message }

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// Parse checks the form and signature of text and returns its claims. certificates looks up
// the certificate of an App ID with key id kid (kid "": the App's current certificate; false:
// unknown App or key id). Match does the lookup among an App's certificates.
func Parse(text string, certificates func(appID, kid string) (string, bool)) (*Claims, error) {
	if text == "" {
		return nil, refuse(ReasonMissing, "no token given")
	}
	if !strings.HasPrefix(text, prefix) {
		return nil, refuse(ReasonMalformed, "not a camagent token")
	}
	dot := strings.LastIndexByte(text, '.')
	if dot <= len(prefix) {
		return nil, refuse(ReasonMalformed, "token has no signature")
	}
	payload, sigText := text[:dot], text[dot+1:]
	// Strict: a token has one spelling (no unused bits set in a last character), so that
	// a log, a cache or a revocation list keyed by the text cannot be sidestepped.
	b64 := base64.RawURLEncoding.Strict()
	body, err := b64.DecodeString(payload[len(prefix):])
	if err != nil {
		return nil, refuse(ReasonMalformed, "token claims are not base64url")
	}
	sig, err := b64.DecodeString(sigText)
	if err != nil {
		return nil, refuse(ReasonMalformed, "token signature is not base64url")
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, refuse(ReasonMalformed, "token claims are not valid JSON")
	}
	cert, ok := certificates(c.AppID, c.KeyID)
	if !ok && c.KeyID != "" {
		if _, known := certificates(c.AppID, ""); known {
			return nil, refuse(ReasonBadSignature, "signed with an unknown key (kid %q) of App %q: retired or never issued", c.KeyID, c.AppID)
		}
	}
	if !ok {
		return nil, refuse(ReasonUnknownApp, "unknown App ID %q", c.AppID)
	}
	if c.KeyID != "" && KeyID(cert) != c.KeyID {
		return nil, refuse(ReasonBadSignature, "bad signature (kid %q is not this App's certificate)", c.KeyID)
	}
	if !hmac.Equal(sig, mac(cert, payload)) {
		return nil, refuse(ReasonBadSignature, "bad signature (not signed with this App's certificate)")
	}
	return &c, nil
}

// Check verifies that claims admit a join (and privilege priv, if not empty) of uid to channel of
// appID at time now.
func (c *Claims) Check(appID, channel string, uid uint32, priv string, now time.Time) error {
	switch {
	case c.AppID != appID:
		return refuse(ReasonWrongApp, "token is for App ID %q, not %q", c.AppID, appID)
	case c.Channel != channel:
		return refuse(ReasonWrongChannel, "token is for channel %q, not %q", c.Channel, channel)
	case c.UID != 0 && c.UID != uid:
		return refuse(ReasonWrongUID, "token is for uid %d, not %d", c.UID, uid)
	case c.NotBefore != 0 && now.Unix() < c.NotBefore:
		return refuse(ReasonNotYetValid, "token is not valid before %s", time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	case now.Unix() >= c.ExpiresAt:
		return refuse(ReasonExpired, "token expired at %s", c.Expiry().UTC().Format(time.RFC3339))
	case c.ExpiresAt > now.Add(MaxLifetime+clockSkew).Unix():
		return refuse(ReasonTooLong, "token is valid until %s, more than %s from now", c.Expiry().UTC().Format(time.RFC3339), MaxLifetime)
	case !c.Has(PrivJoin):
		return refuse(ReasonNoPrivilege, "token does not grant join")
	case priv != "" && publishes(priv) && c.UID == 0 && c.Has(priv):
		return refuse(ReasonNoPrivilege, "a wildcard-uid token cannot %s: mint one for the uid", priv)
	case priv != "" && !c.Has(priv):
		return refuse(ReasonNoPrivilege, "token does not grant %s", priv)
	}
	return nil
}

// Mint is a convenience: claims for a role, valid from now for ttl (at most MaxLifetime),
// signed. A role that publishes needs a named uid (not 0).
func Mint(appID, certificate, channel string, uid uint32, role string, ttl time.Duration, now time.Time) (string, *Claims, error) {
	privs, err := PrivilegesFor(role)
	if err != nil {
		return "", nil, err
	}
	return MintPrivileges(appID, certificate, channel, uid, privs, ttl, now)
}

// MintPrivileges signs claims with exactly privs (which must include PrivJoin), valid from
// now for ttl (at most MaxLifetime). Publishing privileges need a named uid (not 0).
func MintPrivileges(appID, certificate, channel string, uid uint32, privs []string, ttl time.Duration, now time.Time) (string, *Claims, error) {
	if ttl <= 0 {
		return "", nil, fmt.Errorf("token: expiry must be positive, got %s", ttl)
	}
	if ttl > MaxLifetime {
		return "", nil, fmt.Errorf("token: lifetime %s exceeds the maximum of %s", ttl, MaxLifetime)
	}
	var set []string
	for _, p := range privs {
		switch p {
		case PrivJoin, PrivPublishAudio, PrivPublishVideo, PrivSubscribe:
		default:
			return "", nil, fmt.Errorf("token: unknown privilege %q", p)
		}
		if publishes(p) && uid == 0 {
			return "", nil, fmt.Errorf("token: %s needs a named uid, not the wildcard 0", p)
		}
		if !slices.Contains(set, p) {
			set = append(set, p)
		}
	}
	if !slices.Contains(set, PrivJoin) {
		return "", nil, errors.New("token: privileges must include join")
	}
	c := Claims{AppID: appID, Channel: channel, UID: uid, Privileges: set,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix(), KeyID: KeyID(certificate)}
	t, err := Sign(c, certificate)
	return t, &c, err
}
