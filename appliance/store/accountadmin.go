package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// schemaAccountAdmin is the migration of the administrator's account tools
// (the web UI): deletions with a grace period and password reset links.
//
// An account marked for deletion is locked: its SCRAM keys move to
// held_scram_keys (so no login succeeds, and the FAST tokens go by the
// trigger of schemaFAST), and come back if the deletion is cancelled. A
// reset link is kept only as the SHA-256 digest of its token.
const schemaAccountAdmin = `
CREATE TABLE account_deletions (
	username     TEXT    NOT NULL PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
	requested    INTEGER NOT NULL,              -- unix ms
	due          INTEGER NOT NULL,              -- unix ms: delete from then on
	requested_by TEXT    NOT NULL DEFAULT ''    -- localpart of the administrator, or the user
) STRICT;
CREATE INDEX account_deletions_by_due ON account_deletions (due);

-- The SCRAM keys of an account marked for deletion, restored on cancel.
CREATE TABLE held_scram_keys (
	username   TEXT    NOT NULL REFERENCES account_deletions(username) ON DELETE CASCADE,
	hash       TEXT    NOT NULL,
	salt       BLOB    NOT NULL,
	iterations INTEGER NOT NULL,
	stored_key BLOB    NOT NULL,
	server_key BLOB    NOT NULL,
	PRIMARY KEY (username, hash)
) STRICT;

CREATE TABLE password_resets (
	digest     TEXT    NOT NULL PRIMARY KEY,    -- hex SHA-256 of the token, never the token
	username   TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	created    INTEGER NOT NULL,                -- unix ms
	expires    INTEGER NOT NULL,                -- unix ms
	created_by TEXT    NOT NULL DEFAULT ''      -- localpart of the administrator
) STRICT;
CREATE INDEX password_resets_by_user ON password_resets (username);
`

// AccountDeletion is an account marked for deletion after a grace period.
type AccountDeletion struct {
	// Username is the account's localpart.
	Username string
	// Requested is when it was marked; Due is when the deletion job may
	// delete it (UTC, millisecond precision).
	Requested, Due time.Time
	// RequestedBy is the localpart of who asked (an administrator, or the
	// user themselves).
	RequestedBy string
}

// markAccountDeletion marks username for deletion at due and locks it in
// the transaction tx: its SCRAM keys are held aside (logins fail as for an
// unknown account, FAST tokens are dropped) and its password reset links
// are deleted. Errors: [ErrNotFound] if there is no such account,
// [ErrExists] if it is already marked.
func markAccountDeletion(ctx context.Context, tx *sql.Tx, username, requestedBy string, requested, due time.Time) error {
	if err := requireAccount(ctx, tx, username); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO account_deletions (username, requested, due, requested_by)
		VALUES (?, ?, ?, ?) ON CONFLICT (username) DO NOTHING`, username, millis(requested), millis(due), requestedBy)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%w: deletion of %q", ErrExists, username)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO held_scram_keys (username, hash, salt, iterations, stored_key, server_key)
		SELECT username, hash, salt, iterations, stored_key, server_key FROM scram_keys WHERE username = ?`, username); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM scram_keys WHERE username = ?`, username); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM password_resets WHERE username = ?`, username)
	return err
}

// CancelAccountDeletion unmarks username and unlocks it: the held SCRAM
// keys come back, unless the account got new ones meanwhile (a password
// set by the operator), which then stay. Returns an error matching
// [ErrNotFound] if the account is not marked.
func (s *Store) CancelAccountDeletion(ctx context.Context, username string) error {
	return s.write(ctx, fmt.Sprintf("cancel deletion of %q", username), func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM account_deletions WHERE username = ?`, username).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("deletion of %q", username)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO scram_keys (username, hash, salt, iterations, stored_key, server_key)
			SELECT username, hash, salt, iterations, stored_key, server_key FROM held_scram_keys
			WHERE username = ? AND NOT EXISTS (SELECT 1 FROM scram_keys WHERE username = ?)`, username, username); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM account_deletions WHERE username = ?`, username)
		return err
	})
}

// AccountDeletions returns every account marked for deletion, soonest due
// first.
func (s *Store) AccountDeletions(ctx context.Context) ([]AccountDeletion, error) {
	return s.accountDeletions(ctx, "list account deletions", `SELECT username, requested, due, requested_by
		FROM account_deletions ORDER BY due, username`)
}

// DueAccountDeletions returns the accounts marked for deletion whose due
// time is not after now, soonest first.
func (s *Store) DueAccountDeletions(ctx context.Context, now time.Time) ([]AccountDeletion, error) {
	return s.accountDeletions(ctx, "list due account deletions", `SELECT username, requested, due, requested_by
		FROM account_deletions WHERE due <= ? ORDER BY due, username`, millis(now))
}

func (s *Store) accountDeletions(ctx context.Context, op, query string, args ...any) ([]AccountDeletion, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []AccountDeletion
	for rows.Next() {
		var (
			d        AccountDeletion
			req, due int64
		)
		if err := rows.Scan(&d.Username, &req, &due, &d.RequestedBy); err != nil {
			return nil, wrap(op, err)
		}
		d.Requested, d.Due = fromMillis(req), fromMillis(due)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// PasswordReset is a one-time password reset link an administrator gave a
// user. Only the digest of its token is stored.
type PasswordReset struct {
	// Digest is the hex SHA-256 of the link's token, chosen by the caller.
	Digest string
	// Username is the account whose password the link sets.
	Username string
	// Created and Expires bound its validity (UTC, millisecond precision).
	Created, Expires time.Time
	// CreatedBy is the administrator's localpart.
	CreatedBy string
}

// CreatePasswordReset stores r. Returns an error matching [ErrNotFound] if
// r.Username has no account or is marked for deletion, [ErrExists] if the
// digest is taken, or a plain error for an empty digest or an expiry not
// after creation.
func (s *Store) CreatePasswordReset(ctx context.Context, r PasswordReset) error {
	op := fmt.Sprintf("create password reset for %q", r.Username)
	if r.Digest == "" || !r.Expires.After(r.Created) {
		return wrap(op, errors.New("empty digest or expiry not after creation"))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, r.Username); err != nil {
			return err
		}
		if marked, err := isMarked(ctx, tx, r.Username); err != nil {
			return err
		} else if marked {
			return notFound("account %q (marked for deletion)", r.Username)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO password_resets (digest, username, created, expires, created_by)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING`,
			r.Digest, r.Username, millis(r.Created), millis(r.Expires), r.CreatedBy)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: password reset digest", ErrExists)
		}
		return nil
	})
}

func isMarked(ctx context.Context, q queryer, username string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM account_deletions WHERE username = ?`, username).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// PasswordResetByDigest returns the reset link with digest (expired or
// not). Returns an error matching [ErrNotFound] if there is none.
func (s *Store) PasswordResetByDigest(ctx context.Context, digest string) (PasswordReset, error) {
	r := PasswordReset{Digest: digest}
	var created, expires int64
	err := s.r.QueryRowContext(ctx, `SELECT username, created, expires, created_by FROM password_resets WHERE digest = ?`, digest).
		Scan(&r.Username, &created, &expires, &r.CreatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return PasswordReset{}, notFound("password reset")
	}
	if err != nil {
		return PasswordReset{}, wrap("password reset", err)
	}
	r.Created, r.Expires = fromMillis(created), fromMillis(expires)
	return r, nil
}

// UsePasswordReset spends the reset link with digest, in one transaction:
// if it exists and now is before its expiry, the account's SCRAM keys are
// replaced by keys (FAST tokens go with the old ones) and every reset link
// of the account is deleted. It returns the account's username. Returns an
// error matching [ErrNotFound] for an unknown, used or expired link, or a
// plain error for malformed keys (see [Store.CreateAccount]).
func (s *Store) UsePasswordReset(ctx context.Context, digest string, now time.Time, keys []ScramKey) (string, error) {
	op := "use password reset"
	if err := validateKeys(keys); err != nil {
		return "", wrap(op, err)
	}
	var user string
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		var expires int64
		err := tx.QueryRowContext(ctx, `SELECT username, expires FROM password_resets WHERE digest = ?`, digest).Scan(&user, &expires)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && millis(now) >= expires) {
			return notFound("password reset")
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM scram_keys WHERE username = ?`, user); err != nil {
			return err
		}
		if err := insertKeys(ctx, tx, user, keys); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM password_resets WHERE username = ?`, user)
		return err
	})
	if err != nil {
		return "", err
	}
	return user, nil
}

// DeletePasswordResets deletes every reset link of username (no error if
// there is none).
func (s *Store) DeletePasswordResets(ctx context.Context, username string) error {
	return s.write(ctx, fmt.Sprintf("delete password resets of %q", username), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM password_resets WHERE username = ?`, username)
		return err
	})
}

// PrunePasswordResets deletes the reset links that expired before t and
// returns how many.
func (s *Store) PrunePasswordResets(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "prune password resets", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM password_resets WHERE expires < ?`, millis(t))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// AccountCount returns the number of accounts.
func (s *Store) AccountCount(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM accounts`).Scan(&n); err != nil {
		return 0, wrap("count accounts", err)
	}
	return n, nil
}

// PrivateXMLItems returns every element username keeps in private XML
// storage (XEP-0049), serialized, ordered by namespace; for exports
// (XEP-0227 §4.5). Returns an error matching [ErrNotFound] if there is no
// such account.
func (s *Store) PrivateXMLItems(ctx context.Context, username string) ([][]byte, error) {
	var out [][]byte
	err := s.read(ctx, fmt.Sprintf("private XML of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT data FROM private_xml WHERE username = ? ORDER BY namespace`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			out = append(out, b)
		}
		return rows.Err()
	})
	return out, err
}

// Snapshot writes a consistent copy of the whole database to the new file
// path (SQLite VACUUM INTO, on a connection of its own: one read
// transaction, so the server's writers go on meanwhile; the copy is
// compacted and not in WAL mode). The file must not exist. For backups.
func (s *Store) Snapshot(ctx context.Context, path string) error {
	var file string
	if err := s.r.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
		return wrap("snapshot", err)
	}
	// The read pool is query_only, which VACUUM INTO does not pass.
	db, err := sql.Open("sqlite3", dsn(file, url.Values{
		"_busy_timeout": {fmt.Sprint(BusyTimeout.Milliseconds())},
		"_txlock":       {"deferred"},
	}))
	if err != nil {
		return wrap("snapshot", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return wrap("snapshot", err)
	}
	return nil
}
