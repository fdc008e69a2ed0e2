package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// schemaWebSessions is the migration of the web interface's login
// sessions (package webui), kept in the database so that a restart of the
// process does not log anyone out. A session is kept only as the SHA-256
// digest of its cookie value: a copy of the database does not give a
// working cookie.
const schemaWebSessions = `
CREATE TABLE web_sessions (
	digest   TEXT    NOT NULL PRIMARY KEY,          -- hex SHA-256 of the cookie value, never the value
	username TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	wizard   INTEGER NOT NULL DEFAULT 0 CHECK (wizard IN (0, 1)), -- made by the setup wizard
	created  INTEGER NOT NULL,                      -- unix ms
	expires  INTEGER NOT NULL                       -- unix ms: not valid from then on
) STRICT;
CREATE INDEX web_sessions_by_user ON web_sessions (username, expires);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires);
`

// WebSession is one browser's login to the web interface.
type WebSession struct {
	// Digest is the hex SHA-256 of the session cookie's value, computed
	// by the caller.
	Digest string
	// Username is the localpart of the logged-in account.
	Username string
	// Wizard marks a session made by the setup wizard (its later steps).
	Wizard bool
	// Created and Expires bound its validity (UTC, millisecond precision).
	Created, Expires time.Time
}

// CreateWebSession stores ws. In the same transaction it deletes the
// sessions that expired by ws.Created and, when ws.Username would then
// have more than maxPerUser sessions (maxPerUser > 0), that account's
// sessions expiring soonest (among equal expiries, the ones stored
// first), so that at most maxPerUser remain. Returns an
// error matching [ErrNotFound] if ws.Username has no account, [ErrExists]
// if the digest is taken, or a plain error for an empty digest or an
// expiry not after creation.
func (s *Store) CreateWebSession(ctx context.Context, ws WebSession, maxPerUser int) error {
	op := fmt.Sprintf("create web session for %q", ws.Username)
	if ws.Digest == "" || !ws.Expires.After(ws.Created) {
		return wrap(op, errors.New("empty digest or expiry not after creation"))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, ws.Username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires <= ?`, millis(ws.Created)); err != nil {
			return err
		}
		if maxPerUser > 0 {
			// Keep the maxPerUser-1 latest ones, making room for ws.
			if _, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE username = ? AND digest NOT IN
				(SELECT digest FROM web_sessions WHERE username = ? ORDER BY expires DESC, rowid DESC LIMIT ?)`,
				ws.Username, ws.Username, maxPerUser-1); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO web_sessions (digest, username, wizard, created, expires)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING`,
			ws.Digest, ws.Username, ws.Wizard, millis(ws.Created), millis(ws.Expires))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: web session digest", ErrExists)
		}
		return nil
	})
}

// WebSessionByDigest returns the session with digest if it is still
// valid at now. Returns an error matching [ErrNotFound] if there is none
// or it expired (expires <= now).
func (s *Store) WebSessionByDigest(ctx context.Context, digest string, now time.Time) (WebSession, error) {
	ws := WebSession{Digest: digest}
	var created, expires int64
	err := s.r.QueryRowContext(ctx, `SELECT username, wizard, created, expires FROM web_sessions
		WHERE digest = ? AND expires > ?`, digest, millis(now)).
		Scan(&ws.Username, &ws.Wizard, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return WebSession{}, notFound("web session")
	}
	if err != nil {
		return WebSession{}, wrap("web session", err)
	}
	ws.Created, ws.Expires = fromMillis(created), fromMillis(expires)
	return ws, nil
}

// DeleteWebSession deletes the session with digest (no error if there is
// none): a logout.
func (s *Store) DeleteWebSession(ctx context.Context, digest string) error {
	return s.write(ctx, "delete web session", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE digest = ?`, digest)
		return err
	})
}

// DeleteWebSessions deletes every session of username and returns how
// many (none is no error). Deleting the account deletes them too.
func (s *Store) DeleteWebSessions(ctx context.Context, username string) (int, error) {
	var n int64
	err := s.write(ctx, fmt.Sprintf("delete web sessions of %q", username), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE username = ?`, username)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// PruneWebSessions deletes the sessions expired at t (expires <= t) and
// returns how many.
func (s *Store) PruneWebSessions(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "prune web sessions", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires <= ?`, millis(t))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// InitSetting stores value under key unless key is already set, in one
// transaction, and returns the value stored under key afterwards (value,
// or the earlier one). For secrets generated once per data directory,
// such as the web interface's CSRF key, when several processes or
// services may start at the same moment.
func (s *Store) InitSetting(ctx context.Context, key, value string) (string, error) {
	var out string
	err := s.write(ctx, fmt.Sprintf("init setting %q", key), func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&out)
	})
	return out, err
}
