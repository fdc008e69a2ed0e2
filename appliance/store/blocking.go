package store

import (
	"context"
	"database/sql"
	"fmt"
)

// schemaBlocking is migration 5: XEP-0191 block lists, one row per blocked
// JID. The JID is stored as the caller normalised it (RFC 7622) and may be
// any of the four XEP-0191 §6 forms: user@domain/resource, user@domain,
// domain/resource or domain.
const schemaBlocking = `
CREATE TABLE blocklist (
	username TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	jid      TEXT    NOT NULL,                  -- normalised JID, XEP-0191 §6 form
	created  INTEGER NOT NULL,                  -- unix ms
	PRIMARY KEY (username, jid)
) STRICT;
`

// Blocklist returns the JIDs username has blocked (XEP-0191 §3.2), sorted
// in byte order; nil if none. Returns an error matching [ErrNotFound] if
// there is no such account.
func (s *Store) Blocklist(ctx context.Context, username string) ([]string, error) {
	var out []string
	err := s.read(ctx, fmt.Sprintf("blocklist of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		var err error
		out, err = blocklist(ctx, tx, username)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Block adds jids to username's block list (XEP-0191 §3.3) in one
// transaction and returns those that were not blocked before, in the order
// given, without duplicates (nil if all were). If max > 0 and the list
// would then hold more than max JIDs, nothing is added and an error
// matching [ErrQuotaExceeded] is returned; max <= 0 means unlimited.
// Returns an error matching [ErrNotFound] if there is no such account.
func (s *Store) Block(ctx context.Context, username string, jids []string, max int) ([]string, error) {
	var added []string
	err := s.write(ctx, fmt.Sprintf("block for %q", username), func(tx *sql.Tx) error {
		added = nil
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		now := millis(s.now())
		for _, j := range jids {
			res, err := tx.ExecContext(ctx, `INSERT INTO blocklist (username, jid, created) VALUES (?, ?, ?)
				ON CONFLICT (username, jid) DO NOTHING`, username, j, now)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n > 0 {
				added = append(added, j)
			}
		}
		if max > 0 && len(added) > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM blocklist WHERE username = ?`, username).Scan(&n); err != nil {
				return err
			}
			if n > max {
				return fmt.Errorf("%w: %q would block %d JIDs (limit %d)", ErrQuotaExceeded, username, n, max)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return added, nil
}

// Unblock removes jids from username's block list (XEP-0191 §3.4) and
// returns those that were blocked, in the order given, without duplicates
// (nil if none was). Returns an error matching [ErrNotFound] if there is no
// such account.
func (s *Store) Unblock(ctx context.Context, username string, jids []string) ([]string, error) {
	var removed []string
	err := s.write(ctx, fmt.Sprintf("unblock for %q", username), func(tx *sql.Tx) error {
		removed = nil
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		for _, j := range jids {
			res, err := tx.ExecContext(ctx, `DELETE FROM blocklist WHERE username = ? AND jid = ?`, username, j)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n > 0 {
				removed = append(removed, j)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// UnblockAll empties username's block list (XEP-0191 §3.5) and returns the
// JIDs it held, sorted in byte order (nil if it was empty). Returns an error
// matching [ErrNotFound] if there is no such account.
func (s *Store) UnblockAll(ctx context.Context, username string) ([]string, error) {
	var removed []string
	err := s.write(ctx, fmt.Sprintf("unblock all for %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		var err error
		if removed, err = blocklist(ctx, tx, username); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM blocklist WHERE username = ?`, username)
		return err
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// blocklist reads username's blocked JIDs in byte order.
func blocklist(ctx context.Context, tx *sql.Tx, username string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT jid FROM blocklist WHERE username = ? ORDER BY jid`, username)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}
