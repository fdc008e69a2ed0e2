package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ScramKey is one SCRAM credential (RFC 5802 §3; RFC 7677 for SHA-256).
// Hash is the IANA hash name "SHA-1", "SHA-256" or "SHA-512"; Salt is the
// raw (not base64) salt; Iterations is the PBKDF2 iteration count (> 0);
// StoredKey = H(ClientKey) and ServerKey = HMAC(SaltedPassword, "Server
// Key") are raw digests of the hash's output size (20, 32 or 64 bytes).
// The store never sees or keeps a password.
type ScramKey struct {
	Hash       string
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Account is a local user as listed by [Store.Accounts].
type Account struct {
	// Username is the XMPP localpart.
	Username string
	// Created is when the account was created (UTC, millisecond precision).
	Created time.Time
	// LastLogout is when the user's last session ended (XEP-0012), or the
	// zero time if never recorded.
	LastLogout time.Time
	// LastStatus is the status text of the user's last unavailable
	// presence (XEP-0012), "" if none.
	LastStatus string
}

// hashSizes maps the SCRAM hash names the store accepts to their digest
// size in bytes.
var hashSizes = map[string]int{"SHA-1": 20, "SHA-256": 32, "SHA-512": 64}

// validateKeys checks keys for known hashes, sane parameters and no hash
// appearing twice.
func validateKeys(keys []ScramKey) error {
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		size, ok := hashSizes[k.Hash]
		switch {
		case !ok:
			return fmt.Errorf("unsupported SCRAM hash %q", k.Hash)
		case seen[k.Hash]:
			return fmt.Errorf("duplicate SCRAM key for %s", k.Hash)
		case k.Iterations <= 0:
			return fmt.Errorf("SCRAM %s key: iterations %d <= 0", k.Hash, k.Iterations)
		case len(k.Salt) == 0:
			return fmt.Errorf("SCRAM %s key: empty salt", k.Hash)
		case len(k.StoredKey) != size || len(k.ServerKey) != size:
			return fmt.Errorf("SCRAM %s key: StoredKey/ServerKey must be %d bytes, got %d/%d",
				k.Hash, size, len(k.StoredKey), len(k.ServerKey))
		}
		seen[k.Hash] = true
	}
	return nil
}

// insertKeys adds keys for username inside tx.
func insertKeys(ctx context.Context, tx *sql.Tx, username string, keys []ScramKey) error {
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `INSERT INTO scram_keys
			(username, hash, salt, iterations, stored_key, server_key) VALUES (?, ?, ?, ?, ?, ?)`,
			username, k.Hash, k.Salt, k.Iterations, k.StoredKey, k.ServerKey); err != nil {
			return err
		}
	}
	return nil
}

// CreateAccount creates the account username with the given SCRAM
// credentials (at most one per hash; usually SHA-1 and SHA-256, RFC 6120
// §6 / RFC 7677), Created set to now. keys may be empty (the account then
// cannot authenticate until [Store.SetCredentials]). Returns an error
// matching [ErrExists] if the account already exists, or a plain error if
// a key is malformed (unknown hash, duplicate hash, Iterations <= 0, empty
// salt, or key lengths not the hash's digest size).
func (s *Store) CreateAccount(ctx context.Context, username string, keys []ScramKey) error {
	op := fmt.Sprintf("create account %q", username)
	if username == "" {
		return wrap(op, errors.New("empty username"))
	}
	if err := validateKeys(keys); err != nil {
		return wrap(op, err)
	}
	c := s.accounts()
	gen := c.generation()
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		return insertAccount(ctx, tx, username, keys, millis(s.now()))
	})
	if err == nil {
		c.add(username, gen)
	}
	return err
}

// SetCredentials atomically replaces all of username's SCRAM credentials
// with keys (e.g. on a password change, XEP-0077 §3.3, or to add a hash).
// Returns an error matching [ErrNotFound] if there is no such account, or a
// plain error if a key is malformed (see [Store.CreateAccount]).
func (s *Store) SetCredentials(ctx context.Context, username string, keys []ScramKey) error {
	op := fmt.Sprintf("set credentials of %q", username)
	if err := validateKeys(keys); err != nil {
		return wrap(op, err)
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM scram_keys WHERE username = ?`, username); err != nil {
			return err
		}
		return insertKeys(ctx, tx, username, keys)
	})
}

// Credentials returns username's SCRAM credential for hash ("SHA-1",
// "SHA-256" or "SHA-512"), for the server side of SCRAM authentication
// (RFC 5802 §5). Returns an error matching [ErrNotFound] if there is no
// such account or it has no key for that hash; callers doing
// authentication should not reveal which.
func (s *Store) Credentials(ctx context.Context, username, hash string) (ScramKey, error) {
	k := ScramKey{Hash: hash}
	err := s.r.QueryRowContext(ctx, `SELECT salt, iterations, stored_key, server_key
		FROM scram_keys WHERE username = ? AND hash = ?`, username, hash).
		Scan(&k.Salt, &k.Iterations, &k.StoredKey, &k.ServerKey)
	if errors.Is(err, sql.ErrNoRows) {
		return ScramKey{}, notFound("%s credentials of %q", hash, username)
	}
	if err != nil {
		return ScramKey{}, wrap(fmt.Sprintf("credentials of %q", username), err)
	}
	return k, nil
}

// AccountExists reports whether username has an account (e.g. to decide
// between service-unavailable and offline storage, RFC 6121 §8.5.2).
//
// It is called for every routed stanza, so a "yes" is answered from an
// in-memory cache of accounts known to exist (filled by earlier lookups
// and by creations through this Store, emptied of an account when this
// Store deletes it); a "no" is always read from the database, so an
// account created meanwhile by another process (the CLI's "hearth user
// add") is found. Deletions by another process are not seen: while a
// server runs, accounts are deleted through it (see accountCache).
func (s *Store) AccountExists(ctx context.Context, username string) (bool, error) {
	c := s.accounts()
	if c.has(username) {
		return true, nil
	}
	gen := c.generation()
	if accountQueryHook != nil {
		accountQueryHook(username)
	}
	err := requireAccount(ctx, s.r, username)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, wrap(fmt.Sprintf("account exists %q", username), err)
	}
	c.add(username, gen)
	return true, nil
}

// accountQueryHook, when set (by tests), is called each time
// [Store.AccountExists] queries the database.
var accountQueryHook func(username string)

// Accounts returns every account, sorted by username (byte order).
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT username, created, last_logout, last_status
		FROM accounts ORDER BY username`)
	if err != nil {
		return nil, wrap("list accounts", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var (
			a       Account
			created int64
			logout  sql.Null[int64]
		)
		if err := rows.Scan(&a.Username, &created, &logout, &a.LastStatus); err != nil {
			return nil, wrap("list accounts", err)
		}
		a.Created, a.LastLogout = fromMillis(created), fromNullMillis(logout)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list accounts", err)
	}
	return out, nil
}

// DeleteAccount deletes username and, in the same transaction, all of its
// data: credentials, roster, pending subscription requests, offline
// messages, vCard and private XML (XEP-0077 §3.2 cancellation, or the
// admin CLI), and its group chat affiliations (XEP-0045 §5.2, by its bare
// JID under the data directory's domain): a later account of the same
// name is another person. A running group chat service must also forget
// them in its live rooms (muc.Service.ForgetUser). Returns an error
// matching [ErrNotFound] if there is no such account.
func (s *Store) DeleteAccount(ctx context.Context, username string) error {
	// Forgotten after the commit (a lookup in between still sees the row
	// and must not re-add it: forget bumps the cache generation) and also
	// on failure, which costs one query at most.
	defer s.accounts().forget(username)
	defer s.prefs.forget(username)
	return s.write(ctx, fmt.Sprintf("delete account %q", username), func(tx *sql.Tx) error {
		// Everything else goes by ON DELETE CASCADE.
		res, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE username = ?`, username)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("account %q", username)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM muc_affiliations
			WHERE jid = ? || '@' || (SELECT value FROM settings WHERE key = ?)`, username, SettingDomain)
		return err
	})
}

// SetLastActivity records that username's last session ended at t with
// unavailable-presence status text status ("" for none), for XEP-0012
// Last Activity queries. A zero t clears the logout time. Returns an error
// matching [ErrNotFound] if there is no such account.
func (s *Store) SetLastActivity(ctx context.Context, username string, t time.Time, status string) error {
	return s.write(ctx, fmt.Sprintf("set last activity of %q", username), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET last_logout = ?, last_status = ? WHERE username = ?`,
			nullMillis(t), status, username)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("account %q", username)
		}
		return nil
	})
}
