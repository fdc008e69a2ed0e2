package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// SubscriptionRequest is an inbound presence subscription request that the
// user has not yet answered (RFC 6121 §3.1.3).
type SubscriptionRequest struct {
	// Contact is the requesting bare JID.
	Contact string
	// Stanza is the serialized <presence type='subscribe'/> as received,
	// to be redelivered verbatim.
	Stanza []byte
	// Received is when the (latest) request was stored (UTC, millisecond
	// precision).
	Received time.Time
}

// AddSubscriptionRequest stores an inbound subscription request from the
// bare JID contact to username, to be delivered at each login until
// answered (RFC 6121 §3.1.3). Storage is independent of the roster. A
// request from the same contact replaces the earlier one (stanza and
// Received time). Returns an error matching [ErrNotFound] if there is no
// such account.
func (s *Store) AddSubscriptionRequest(ctx context.Context, username, contact string, stanza []byte) error {
	return s.write(ctx, fmt.Sprintf("add subscription request from %q to %q", contact, username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO subscription_requests (username, contact, stanza, received)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (username, contact) DO UPDATE SET stanza = excluded.stanza, received = excluded.received`,
			username, contact, nonNil(stanza), millis(s.now()))
		return err
	})
}

// SubscriptionRequests returns username's pending inbound subscription
// requests (RFC 6121 §3.1.3), oldest Received first (ties by Contact).
// Returns an error matching [ErrNotFound] if there is no such account.
func (s *Store) SubscriptionRequests(ctx context.Context, username string) ([]SubscriptionRequest, error) {
	var out []SubscriptionRequest
	err := s.read(ctx, fmt.Sprintf("subscription requests of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT contact, stanza, received FROM subscription_requests
			WHERE username = ? ORDER BY received, contact`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r  SubscriptionRequest
				ms int64
			)
			if err := rows.Scan(&r.Contact, &r.Stanza, &ms); err != nil {
				return err
			}
			r.Received = fromMillis(ms)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSubscriptionRequest removes the pending request from contact to
// username, once the user has approved or denied it (RFC 6121 §3.1.4,
// §3.1.5) or the contact cancelled it. It is not an error if there is no
// such request or account.
func (s *Store) DeleteSubscriptionRequest(ctx context.Context, username, contact string) error {
	return s.write(ctx, fmt.Sprintf("delete subscription request from %q to %q", contact, username), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM subscription_requests WHERE username = ? AND contact = ?`,
			username, contact)
		return err
	})
}

// OfflineMessage is a stanza stored for later delivery (XEP-0160).
type OfflineMessage struct {
	// ID increases with every message stored in the database and is never
	// reused; pass it to [Store.DeleteOffline] once delivered.
	ID int64
	// Stanza is the serialized stanza, to be delivered verbatim.
	Stanza []byte
	// Stored is the time given to PushOffline (UTC, millisecond
	// precision), e.g. for the XEP-0203 delay stamp.
	Stored time.Time
}

// PushOffline appends stanza to username's offline queue (XEP-0160) with
// storage time stored. If max > 0 and the user already has max or more
// offline messages, nothing is stored and an error matching
// [ErrQuotaExceeded] is returned (the caller bounces the stanza, XEP-0160
// §3); max <= 0 means unlimited. Returns an error matching [ErrNotFound] if
// there is no such account.
func (s *Store) PushOffline(ctx context.Context, username string, stanza []byte, stored time.Time, max int) error {
	return s.write(ctx, fmt.Sprintf("push offline message to %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if max > 0 {
			n, err := offlineCount(ctx, tx, username)
			if err != nil {
				return err
			}
			if n >= max {
				return fmt.Errorf("%w: %q has %d offline messages (limit %d)", ErrQuotaExceeded, username, n, max)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO offline_messages (username, stanza, stored) VALUES (?, ?, ?)`,
			username, nonNil(stanza), millis(stored))
		return err
	})
}

// OfflineMessages returns username's offline messages oldest first
// (ascending ID), for delivery at login (XEP-0160 §3). They stay stored
// until [Store.DeleteOffline]. Returns an error matching [ErrNotFound] if
// there is no such account.
func (s *Store) OfflineMessages(ctx context.Context, username string) ([]OfflineMessage, error) {
	var out []OfflineMessage
	err := s.read(ctx, fmt.Sprintf("offline messages of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, stanza, stored FROM offline_messages
			WHERE username = ? ORDER BY id`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				m  OfflineMessage
				ms int64
			)
			if err := rows.Scan(&m.ID, &m.Stanza, &ms); err != nil {
				return err
			}
			m.Stored = fromMillis(ms)
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteOffline deletes username's offline messages with ID <= upToID,
// i.e. those returned by [Store.OfflineMessages] once delivered; messages
// stored since have larger IDs and are kept (XEP-0160). It is not an error
// if nothing matches or there is no such account.
func (s *Store) DeleteOffline(ctx context.Context, username string, upToID int64) error {
	return s.write(ctx, fmt.Sprintf("delete offline messages of %q", username), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM offline_messages WHERE username = ? AND id <= ?`,
			username, upToID)
		return err
	})
}

// OfflineCount returns how many offline messages username has (XEP-0160;
// also XEP-0013 message count). Returns an error matching [ErrNotFound] if
// there is no such account.
func (s *Store) OfflineCount(ctx context.Context, username string) (int, error) {
	var n int
	err := s.read(ctx, fmt.Sprintf("offline count of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		var err error
		n, err = offlineCount(ctx, tx, username)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// offlineCount counts username's offline messages.
func offlineCount(ctx context.Context, q queryer, username string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM offline_messages WHERE username = ?`, username).Scan(&n)
	return n, err
}
