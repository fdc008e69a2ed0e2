package turn

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// SecretBytes is the number of random bytes in a generated shared secret
// (stored hex-encoded, so the setting is 64 characters long).
const SecretBytes = 32

// Separator separates the expiry timestamp from the user in a TURN REST API
// username (draft-uberti-behave-turn-rest-00 §2.2; coturn's default
// rest-api-separator).
const Separator = ":"

// ErrExpired is returned by CheckUsername for a username whose expiry time
// has passed.
var ErrExpired = errors.New("turn: credentials expired")

// ErrBadUsername is returned by CheckUsername for a username that does not
// start with a decimal Unix timestamp.
var ErrBadUsername = errors.New("turn: username is not <unix-expiry>:<user>")

// LoadOrCreateSecret returns the TURN shared secret stored under
// store.SettingTURNSecret, generating and storing one (SecretBytes from
// crypto/rand, hex-encoded) on first use. The same value configured as
// coturn's static-auth-secret (with use-auth-secret) makes an external coturn
// accept the credentials Hearth hands out. Errors are the store's or
// crypto/rand's. The secret must never be logged.
func LoadOrCreateSecret(ctx context.Context, st *store.Store) (string, error) {
	v, err := st.Setting(ctx, store.SettingTURNSecret)
	if err == nil && v != "" {
		return v, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	b := make([]byte, SecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("turn: generating the shared secret: %w", err)
	}
	v = hex.EncodeToString(b)
	if err := st.SetSetting(ctx, store.SettingTURNSecret, v); err != nil {
		return "", err
	}
	return v, nil
}

// Credentials returns time-limited TURN credentials for user in the TURN REST
// API scheme (draft-uberti-behave-turn-rest-00 §2.2, coturn's
// use-auth-secret): username is "<unix expiry>:<user>" with the expiry
// now+ttl in whole seconds, password is base64(HMAC-SHA1(secret, username)).
// expires is the expiry as a UTC time (what XEP-0215 announces).
func Credentials(secret, user string, ttl time.Duration, now time.Time) (username, password string, expires time.Time) {
	exp := now.Add(ttl).Unix()
	username = strconv.FormatInt(exp, 10) + Separator + user
	return username, Password(secret, username), time.Unix(exp, 0).UTC()
}

// Password returns the TURN REST API password for username:
// base64(HMAC-SHA1(secret, username)) with standard padding
// (draft-uberti-behave-turn-rest-00 §2.2).
func Password(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Expiry returns the expiry time encoded at the start of a TURN REST API
// username ("<unix expiry>" alone or followed by Separator and the user), or
// ErrBadUsername.
func Expiry(username string) (time.Time, error) {
	ts, _, _ := strings.Cut(username, Separator)
	if ts == "" || len(ts) > 19 || strings.TrimLeft(ts, "0123456789") != "" {
		return time.Time{}, ErrBadUsername
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, ErrBadUsername
	}
	return time.Unix(n, 0).UTC(), nil
}

// CheckUsername returns nil if username is a well-formed TURN REST API
// username that has not expired at now (the expiry second itself is still
// valid, as in coturn), ErrExpired if it has, ErrBadUsername if malformed.
func CheckUsername(username string, now time.Time) error {
	exp, err := Expiry(username)
	if err != nil {
		return err
	}
	if exp.Unix() < now.Unix() {
		return ErrExpired
	}
	return nil
}

// Verify reports whether password is the TURN REST API password for username
// under secret and username has not expired at now. The comparison is
// constant-time.
func Verify(secret, username, password string, now time.Time) bool {
	if CheckUsername(username, now) != nil {
		return false
	}
	return hmac.Equal([]byte(Password(secret, username)), []byte(password))
}
