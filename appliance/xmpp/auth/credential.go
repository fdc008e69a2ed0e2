package auth

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/xdg-go/stringprep"
	"golang.org/x/text/secure/precis"
)

// Hash names used in Credential.Hash. They match the hash part of the SCRAM
// mechanism names (RFC 5802 §4, RFC 7677).
const (
	HashSHA1   = "SHA-1"
	HashSHA256 = "SHA-256"
	HashSHA512 = "SHA-512"
)

// DefaultIterations is the PBKDF2 iteration count used by DeriveCredentials
// when called with 0, and the minimum it accepts (RFC 7677 §4 recommends at
// least 4096). It is also the iteration count announced for unknown users.
const DefaultIterations = 4096

// maxIterations bounds the iteration count accepted by DeriveCredentials so
// that a typo cannot make every login take minutes.
const maxIterations = 10_000_000

// saltSize is the length in bytes of the random salts made by
// DeriveCredentials (and of the fake salts made for unknown users).
const saltSize = 16

// ErrUnknownUser is returned, possibly wrapped, by a CredentialSource when the
// user does not exist or has no credential for the requested hash. The SASL
// feature answers such users exactly like a wrong password (RFC 6120 §6.5.10
// <not-authorized/>), so that accounts cannot be enumerated.
var ErrUnknownUser = errors.New("auth: unknown user")

// ErrInvalidPassword is returned, possibly wrapped, by DeriveCredentials when
// the password is empty or not allowed by the PRECIS OpaqueString profile
// (RFC 8265 §4.2), e.g. because it contains control characters.
var ErrInvalidPassword = errors.New("auth: invalid password")

// Credential mirrors one stored SCRAM key (RFC 5802 §3) for one hash function.
//
// Hash is HashSHA1, HashSHA256 or HashSHA512. Salt is the raw (not base64)
// salt, Iterations the PBKDF2 iteration count. StoredKey is H(ClientKey) and
// ServerKey is HMAC(SaltedPassword, "Server Key"); both are raw bytes of the
// hash's output size (20, 32 or 64 bytes). The password itself is never part
// of a Credential and cannot be recovered from it.
type Credential struct {
	Hash       string
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// CredentialSource looks up stored SCRAM credentials, typically from the
// account database.
type CredentialSource interface {
	// Credential returns the stored key of the user with the given normalised
	// localpart (PRECIS UsernameCaseMapped, RFC 8265 §3.3) for hash, which is
	// HashSHA1, HashSHA256 or HashSHA512. It returns an error wrapping
	// ErrUnknownUser when the user or a credential for that hash is absent;
	// any other error is treated as a temporary failure (RFC 6120 §6.5.12
	// <temporary-auth-failure/>).
	Credential(ctx context.Context, username, hash string) (Credential, error)
}

// hashInfo returns the hash constructor and output size for a Credential.Hash
// value.
func hashInfo(name string) (func() hash.Hash, int, bool) {
	switch name {
	case HashSHA1:
		return sha1.New, sha1.Size, true
	case HashSHA256:
		return sha256.New, sha256.Size, true
	case HashSHA512:
		return sha512.New, sha512.Size, true
	}
	return nil, 0, false
}

// preparePassword normalises a password the way both SCRAM (RFC 5802 §2.2,
// SASLprep) and the newer PRECIS rules (RFC 8265 §4.2 OpaqueString, as
// recommended for SCRAM by RFC 7677 and XMPP by RFC 6120 §13.9.4) expect.
//
// The password is first enforced with OpaqueString, which rejects empty and
// otherwise disallowed input. The result is then mapped with SASLprep, which
// is what deployed SCRAM clients (including github.com/xdg-go/scram) apply;
// for any input valid under both, SASLprep(OpaqueString(p)) == SASLprep(p).
// If SASLprep rejects the string (it only knows Unicode 3.2, so e.g. emoji
// are "unassigned"), the OpaqueString form is used as is.
func preparePassword(password string) (string, error) {
	if password == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidPassword)
	}
	p, err := precis.OpaqueString.String(password)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidPassword, err)
	}
	if sp, err := stringprep.SASLprep.Prepare(p); err == nil && sp != "" {
		p = sp
	}
	return p, nil
}

// deriveKeys computes StoredKey and ServerKey (RFC 5802 §3) for an already
// prepared password.
func deriveKeys(h func() hash.Hash, size int, prepared string, salt []byte, iterations int) (storedKey, serverKey []byte, err error) {
	salted, err := pbkdf2.Key(h, prepared, salt, iterations, size)
	if err != nil {
		return nil, nil, err
	}
	mac := hmac.New(h, salted)
	mac.Write([]byte("Client Key"))
	clientKey := mac.Sum(nil)
	sh := h()
	sh.Write(clientKey)
	storedKey = sh.Sum(nil)
	mac = hmac.New(h, salted)
	mac.Write([]byte("Server Key"))
	serverKey = mac.Sum(nil)
	return storedKey, serverKey, nil
}

// DeriveCredentials computes one Credential each for SHA-1, SHA-256 and
// SHA-512 (in that order) from a plaintext password, ready to be stored.
//
// The password is normalised with PRECIS OpaqueString (RFC 8265 §4.2) and
// SASLprep (RFC 4013, as SCRAM clients do; see RFC 5802 §2.2 and RFC 7677);
// empty or disallowed passwords yield an error wrapping ErrInvalidPassword.
// Each Credential gets its own random 16-byte salt. iterations is the PBKDF2
// iteration count; 0 means DefaultIterations, and values below
// DefaultIterations or above 10,000,000 are rejected.
func DeriveCredentials(password string, iterations int) ([]Credential, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < DefaultIterations || iterations > maxIterations {
		return nil, fmt.Errorf("auth: iteration count %d outside [%d, %d]", iterations, DefaultIterations, maxIterations)
	}
	prepared, err := preparePassword(password)
	if err != nil {
		return nil, err
	}
	creds := make([]Credential, 0, 3)
	for _, name := range []string{HashSHA1, HashSHA256, HashSHA512} {
		h, size, _ := hashInfo(name)
		salt := make([]byte, saltSize)
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("auth: reading random salt: %w", err)
		}
		stored, server, err := deriveKeys(h, size, prepared, salt, iterations)
		if err != nil {
			return nil, fmt.Errorf("auth: deriving %s key: %w", name, err)
		}
		creds = append(creds, Credential{
			Hash:       name,
			Salt:       salt,
			Iterations: iterations,
			StoredKey:  stored,
			ServerKey:  server,
		})
	}
	return creds, nil
}

// validate reports whether c is structurally usable.
func (c Credential) validate() error {
	_, size, ok := hashInfo(c.Hash)
	switch {
	case !ok:
		return fmt.Errorf("auth: unknown credential hash %q", c.Hash)
	case len(c.Salt) == 0:
		return errors.New("auth: credential has no salt")
	case c.Iterations < 1 || c.Iterations > maxIterations:
		return fmt.Errorf("auth: credential iteration count %d out of range", c.Iterations)
	case len(c.StoredKey) != size || len(c.ServerKey) != size:
		return fmt.Errorf("auth: credential keys have wrong length for %s", c.Hash)
	}
	return nil
}

// VerifyPassword reports whether the plaintext password (e.g. from SASL
// PLAIN, RFC 4616) matches the stored Credential c. The password is
// normalised exactly as in DeriveCredentials, the PBKDF2 work (c.Iterations
// rounds) is always done, and the keys are compared in constant time. It
// returns false for malformed credentials or passwords.
func VerifyPassword(c Credential, password string) bool {
	if c.validate() != nil {
		return false
	}
	h, size, _ := hashInfo(c.Hash)
	prepared, err := preparePassword(password)
	if err != nil {
		// Still spend the PBKDF2 time so a malformed password is not
		// distinguishable by timing.
		prepared = "\x00invalid"
	}
	stored, _, derr := deriveKeys(h, size, prepared, c.Salt, c.Iterations)
	return derr == nil && hmac.Equal(stored, c.StoredKey) && err == nil
}
