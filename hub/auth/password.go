package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2 passes, 1 lane), affordable
// on a Raspberry Pi hub (about 0.1 s on a Pi 4 core).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
)

// MinPasswordLength is the shortest password accepted for a person.
const MinPasswordLength = 10

// HashPassword returns the PHC-style argon2id hash of password.
func HashPassword(password string) (string, error) {
	if len(password) < MinPasswordLength {
		return "", fmt.Errorf("auth: a password needs at least %d characters", MinPasswordLength)
	}
	if len(password) > 1024 {
		return "", errors.New("auth: a password has at most 1024 characters")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches an argon2id hash made by HashPassword.
func CheckPassword(hash, password string) bool {
	ph, ok := parsePHC(hash)
	if !ok || len(password) > 1024 {
		return false
	}
	got := argon2.IDKey([]byte(password), ph.salt, ph.time, ph.memory, ph.threads, uint32(len(ph.key)))
	return subtle.ConstantTimeCompare(got, ph.key) == 1
}

// phc is a parsed $argon2id$v=19$m=…,t=…,p=…$salt$key string.
type phc struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// parsePHC parses a stored hash, refusing parameters that would make a check costly (a
// tampered file must not turn a login into a denial of service).
func parsePHC(hash string) (phc, bool) {
	var ph phc
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return ph, false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &ph.memory, &ph.time, &ph.threads); err != nil ||
		ph.memory == 0 || ph.memory > 256*1024 || ph.time == 0 || ph.time > 16 || ph.threads == 0 || ph.threads > 16 {
		return ph, false
	}
	var err1, err2 error
	ph.salt, err1 = base64.RawStdEncoding.DecodeString(parts[4])
	ph.key, err2 = base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(ph.key) < 16 || len(ph.key) > 64 || len(ph.salt) < 8 {
		return ph, false
	}
	return ph, true
}

// dummyHash is checked against when a login names an unknown user, so that the answer takes
// as long as for a known one.
var dummyHash, _ = HashPassword("camagent-no-such-user")
