package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// RosterItem is one contact in a user's roster (RFC 6121 §2.1.2).
type RosterItem struct {
	// JID is the contact's bare JID; the item's key within the roster.
	JID string
	// Name is the user-assigned handle, "" if none.
	Name string
	// Subscription is the RFC 6121 §2.1.2.5 state: "none", "to", "from" or
	// "both". "" is stored as "none".
	Subscription string
	// Ask is the pending-out flag, ask='subscribe' (RFC 6121 §2.1.2.2).
	Ask bool
	// Approved is the subscription pre-approval flag (RFC 6121 §2.1.2.1,
	// §3.4).
	Approved bool
	// Groups are the item's group names (RFC 6121 §2.1.2.4) in the order
	// given to PutRosterItem, duplicates dropped; nil if none.
	Groups []string
}

// validSubscription lists the RFC 6121 §2.1.2.5 subscription states.
var validSubscription = map[string]bool{"none": true, "to": true, "from": true, "both": true}

// Roster returns username's whole roster sorted by JID (byte order),
// together with its current roster version (XEP-0237; 0 for a roster that
// has never changed), read as one consistent snapshot, for a roster get
// (RFC 6121 §2.1.3). Returns an error matching [ErrNotFound] if there is no
// such account.
func (s *Store) Roster(ctx context.Context, username string) (items []RosterItem, ver int64, err error) {
	err = s.read(ctx, fmt.Sprintf("roster of %q", username), func(tx *sql.Tx) error {
		if ver, err = rosterVersion(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT i.jid, i.name, i.subscription, i.ask, i.approved, g.name
			FROM roster_items i
			LEFT JOIN roster_groups g ON g.username = i.username AND g.jid = i.jid
			WHERE i.username = ?
			ORDER BY i.jid, g.pos`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				it    RosterItem
				group sql.NullString
			)
			if err := rows.Scan(&it.JID, &it.Name, &it.Subscription, &it.Ask, &it.Approved, &group); err != nil {
				return err
			}
			if n := len(items); n == 0 || items[n-1].JID != it.JID {
				items = append(items, it)
			}
			if group.Valid {
				last := &items[len(items)-1]
				last.Groups = append(last.Groups, group.String)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	return items, ver, nil
}

// RosterVersion returns username's current roster version (XEP-0237): an
// integer that increases with every roster change and is never reused for
// the user, even across deletion and re-creation of the account; 0 means
// the roster has never changed (so is empty). Returns an error matching
// [ErrNotFound] if there is no such account.
func (s *Store) RosterVersion(ctx context.Context, username string) (int64, error) {
	ver, err := rosterVersion(ctx, s.r, username)
	if err != nil {
		return 0, wrap(fmt.Sprintf("roster version of %q", username), err)
	}
	return ver, nil
}

// rosterVersion reads username's roster version.
func rosterVersion(ctx context.Context, q queryer, username string) (int64, error) {
	var ver int64
	err := q.QueryRowContext(ctx, `SELECT roster_ver FROM accounts WHERE username = ?`, username).Scan(&ver)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, notFound("account %q", username)
	}
	return ver, err
}

// RosterItem returns the item for the bare JID contact in username's
// roster (RFC 6121 §2.1.2). Returns an error matching [ErrNotFound] if
// there is no such account or item.
func (s *Store) RosterItem(ctx context.Context, username, contact string) (RosterItem, error) {
	var it RosterItem
	err := s.read(ctx, fmt.Sprintf("roster item %q of %q", contact, username), func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT jid, name, subscription, ask, approved
			FROM roster_items WHERE username = ? AND jid = ?`, username, contact).
			Scan(&it.JID, &it.Name, &it.Subscription, &it.Ask, &it.Approved)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("roster item %q of %q", contact, username)
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT name FROM roster_groups
			WHERE username = ? AND jid = ? ORDER BY pos`, username, contact)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var g string
			if err := rows.Scan(&g); err != nil {
				return err
			}
			it.Groups = append(it.Groups, g)
		}
		return rows.Err()
	})
	if err != nil {
		return RosterItem{}, err
	}
	return it, nil
}

// PutRosterItem inserts item into username's roster, or replaces the
// existing item with the same JID (all fields, including Groups), and
// bumps the roster version (XEP-0237), for a roster set or a subscription
// state change (RFC 6121 §2.3, §3). It returns the new version, to send
// in the roster push. The version is bumped even if the item is
// unchanged. Returns an error matching [ErrNotFound] if there is no such
// account, or a plain error if item.JID is empty or item.Subscription is
// not a valid state. The store enforces no roster size limit.
func (s *Store) PutRosterItem(ctx context.Context, username string, item RosterItem) (ver int64, err error) {
	op := fmt.Sprintf("put roster item %q of %q", item.JID, username)
	if item.Subscription == "" {
		item.Subscription = "none"
	}
	if item.JID == "" {
		return 0, wrap(op, errors.New("empty JID"))
	}
	if !validSubscription[item.Subscription] {
		return 0, wrap(op, fmt.Errorf("invalid subscription %q", item.Subscription))
	}
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO roster_items
			(username, jid, name, subscription, ask, approved) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (username, jid) DO UPDATE SET
				name = excluded.name, subscription = excluded.subscription,
				ask = excluded.ask, approved = excluded.approved`,
			username, item.JID, item.Name, item.Subscription, item.Ask, item.Approved); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM roster_groups WHERE username = ? AND jid = ?`,
			username, item.JID); err != nil {
			return err
		}
		for pos, g := range item.Groups {
			if _, err := tx.ExecContext(ctx, `INSERT INTO roster_groups (username, jid, pos, name)
				VALUES (?, ?, ?, ?) ON CONFLICT (username, jid, name) DO NOTHING`,
				username, item.JID, pos, g); err != nil {
				return err
			}
		}
		ver, err = bumpRosterVersion(ctx, tx, username)
		return err
	})
	if err != nil {
		return 0, err
	}
	return ver, nil
}

// DeleteRosterItem removes contact from username's roster and bumps the
// roster version (XEP-0237), for a roster remove (RFC 6121 §2.5). It
// returns the new version. Returns an error matching [ErrNotFound] if there
// is no such account or item (the version is then unchanged). Pending
// subscription requests from contact are not touched.
func (s *Store) DeleteRosterItem(ctx context.Context, username, contact string) (ver int64, err error) {
	err = s.write(ctx, fmt.Sprintf("delete roster item %q of %q", contact, username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM roster_items WHERE username = ? AND jid = ?`, username, contact)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("roster item %q of %q", contact, username)
		}
		ver, err = bumpRosterVersion(ctx, tx, username)
		return err
	})
	if err != nil {
		return 0, err
	}
	return ver, nil
}

// bumpRosterVersion takes the next value of the store-wide roster counter
// as username's roster version and returns it.
func bumpRosterVersion(ctx context.Context, tx *sql.Tx, username string) (int64, error) {
	var ver int64
	if err := tx.QueryRowContext(ctx, `UPDATE roster_seq SET value = value + 1 WHERE id = 1 RETURNING value`).
		Scan(&ver); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE accounts SET roster_ver = ? WHERE username = ?`, ver, username); err != nil {
		return 0, err
	}
	return ver, nil
}
