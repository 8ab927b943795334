// Package token mints and verifies channel tokens.
//
// A token binds an App ID, a channel, a uid, privileges and a validity window, and is signed
// with the App certificate (HMAC-SHA256). Its text form is
//
//	cam1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(certificate, "cam1."+claims))>
//
// uid 0 in a token is a wildcard: the token admits any uid (as in the cloud SDKs).
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

const prefix = "cam1."

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
}

// Has reports whether the claims grant privilege p.
func (c *Claims) Has(p string) bool {
	for _, q := range c.Privileges {
		if q == p {
			return true
		}
	}
	return false
}

// Expiry is the token's expiry time.
func (c *Claims) Expiry() time.Time { return time.Unix(c.ExpiresAt, 0) }

// Sign returns the token text for claims, signed with certificate.
func Sign(c Claims, certificate string) (string, error) {
	if certificate == "" {
		return "", errors.New("token: empty app certificate")
	}
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

// Parse checks the form and signature of text and returns its claims. certificates looks up the
// App certificate of an App ID (false: unknown App).
func Parse(text string, certificates func(appID string) (string, bool)) (*Claims, error) {
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
	body, err := base64.RawURLEncoding.DecodeString(payload[len(prefix):])
	if err != nil {
		return nil, refuse(ReasonMalformed, "token claims are not base64url")
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil {
		return nil, refuse(ReasonMalformed, "token signature is not base64url")
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, refuse(ReasonMalformed, "token claims are not valid JSON")
	}
	cert, ok := certificates(c.AppID)
	if !ok {
		return nil, refuse(ReasonUnknownApp, "unknown App ID %q", c.AppID)
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
	case !c.Has(PrivJoin):
		return refuse(ReasonNoPrivilege, "token does not grant join")
	case priv != "" && !c.Has(priv):
		return refuse(ReasonNoPrivilege, "token does not grant %s", priv)
	}
	return nil
}

// Mint is a convenience: claims for a role, valid from now for ttl, signed.
func Mint(appID, certificate, channel string, uid uint32, role string, ttl time.Duration, now time.Time) (string, *Claims, error) {
	privs, err := PrivilegesFor(role)
	if err != nil {
		return "", nil, err
	}
	if ttl <= 0 {
		return "", nil, fmt.Errorf("token: expiry must be positive, got %s", ttl)
	}
	c := Claims{AppID: appID, Channel: channel, UID: uid, Privileges: privs,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix()}
	t, err := Sign(c, certificate)
	return t, &c, err
}
