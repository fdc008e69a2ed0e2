// Package account creates accounts and sets passwords: the one place that
// turns a password into stored SCRAM keys (RFC 5802 §3, never the password
// itself) for the CLI, in-band password change (XEP-0077) and, later, the web
// UI and invites.
package account

import (
	"context"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
)

// Keys derives the SCRAM-SHA-1, -SHA-256 and -SHA-512 keys for password with
// auth.DefaultIterations and fresh salts. It fails with auth.ErrInvalidPassword
// for an empty or non-normalisable password (RFC 8265 OpaqueString).
func Keys(password string) ([]store.ScramKey, error) {
	creds, err := auth.DeriveCredentials(password, auth.DefaultIterations)
	if err != nil {
		return nil, err
	}
	keys := make([]store.ScramKey, len(creds))
	for i, c := range creds {
		keys[i] = store.ScramKey{Hash: c.Hash, Salt: c.Salt, Iterations: c.Iterations, StoredKey: c.StoredKey, ServerKey: c.ServerKey}
	}
	return keys, nil
}

// Create makes the account username (a normalised localpart) with password.
// Errors: store.ErrExists, auth.ErrInvalidPassword, or the store's.
func Create(ctx context.Context, st *store.Store, username, password string) error {
	keys, err := Keys(password)
	if err != nil {
		return err
	}
	return st.CreateAccount(ctx, username, keys)
}

// SetPassword replaces username's password and signs out every device's
// XEP-0484 FAST token. Errors: store.ErrNotFound, auth.ErrInvalidPassword,
// or the store's.
func SetPassword(ctx context.Context, st *store.Store, username, password string) error {
	keys, err := Keys(password)
	if err != nil {
		return err
	}
	if err := st.SetCredentials(ctx, username, keys); err != nil {
		return err
	}
	return st.DeleteFASTTokens(ctx, username)
}
