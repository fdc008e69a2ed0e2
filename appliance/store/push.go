package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// schemaPush is migration 6: XEP-0357 push registrations, one row per
// (account, XMPP Push Service JID, node), i.e. per device and app.
const schemaPush = `
CREATE TABLE push_registrations (
	username TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	service  TEXT    NOT NULL,                  -- XMPP Push Service (app server) JID
	node     TEXT    NOT NULL,                  -- PubSub node on that service
	options  BLOB    NOT NULL,                  -- serialized publish-options data form, empty = none
	created  INTEGER NOT NULL,                  -- unix ms of the latest enable
	PRIMARY KEY (username, service, node)
) STRICT;
`

// PushRegistration is one XEP-0357 registration: the server publishes a
// notification to Node on Service whenever the account misses a message
// (XEP-0357 §5, §7).
type PushRegistration struct {
	// Service is the XMPP Push Service JID (the app server), normalised by
	// the caller.
	Service string
	// Node is the PubSub node the app server provisioned for the device.
	Node string
	// Options is the serialized publish-options data form given at enable
	// (XEP-0357 §5), sent back with every publish; nil or empty if none.
	Options []byte
	// Created is when the registration was (last) enabled (UTC, millisecond
	// precision); ignored by [Store.EnablePush].
	Created time.Time
}

// EnablePush stores r for username (XEP-0357 §5). Enabling an existing
// (Service, Node) pair again replaces its Options and Created time, as
// XEP-0357 §5 asks ("use the last received request"). If max > 0 and
// username already has max registrations, a new pair is refused with an
// error matching [ErrQuotaExceeded] (replacing an existing one is always
// allowed); max <= 0 means unlimited. Returns an error matching
// [ErrNotFound] if there is no such account.
func (s *Store) EnablePush(ctx context.Context, username string, r PushRegistration, max int) error {
	return s.write(ctx, fmt.Sprintf("enable push for %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if max > 0 {
			var exists int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM push_registrations WHERE username = ? AND service = ? AND node = ?`,
				username, r.Service, r.Node).Scan(&exists)
			if errors.Is(err, sql.ErrNoRows) {
				var n int
				if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM push_registrations WHERE username = ?`, username).Scan(&n); err != nil {
					return err
				}
				if n >= max {
					return fmt.Errorf("%w: %q has %d push registrations (limit %d)", ErrQuotaExceeded, username, n, max)
				}
			} else if err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO push_registrations (username, service, node, options, created)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (username, service, node) DO UPDATE SET options = excluded.options, created = excluded.created`,
			username, r.Service, r.Node, nonNil(r.Options), millis(s.now()))
		return err
	})
}

// PushRegistrations returns username's push registrations sorted by
// Service, then Node (byte order); nil if none. Returns an error matching
// [ErrNotFound] if there is no such account.
func (s *Store) PushRegistrations(ctx context.Context, username string) ([]PushRegistration, error) {
	var out []PushRegistration
	err := s.read(ctx, fmt.Sprintf("push registrations of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT service, node, options, created FROM push_registrations
			WHERE username = ? ORDER BY service, node`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r  PushRegistration
				ms int64
			)
			if err := rows.Scan(&r.Service, &r.Node, &r.Options, &ms); err != nil {
				return err
			}
			if len(r.Options) == 0 {
				r.Options = nil
			}
			r.Created = fromMillis(ms)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DisablePush removes username's registration for (service, node), or with
// node == "" every registration for service (XEP-0357 §6), and returns how
// many it removed. It is not an error if nothing matches or there is no such
// account (it is also called when an app server reports an error, XEP-0357
// §7.1, possibly after the account was deleted).
func (s *Store) DisablePush(ctx context.Context, username, service, node string) (int, error) {
	var n int64
	err := s.write(ctx, fmt.Sprintf("disable push for %q", username), func(tx *sql.Tx) error {
		var (
			res sql.Result
			err error
		)
		if node == "" {
			res, err = tx.ExecContext(ctx, `DELETE FROM push_registrations WHERE username = ? AND service = ?`,
				username, service)
		} else {
			res, err = tx.ExecContext(ctx, `DELETE FROM push_registrations WHERE username = ? AND service = ? AND node = ?`,
				username, service, node)
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
