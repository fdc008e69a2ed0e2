package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// schemaPubSub is the migration creating the tables for XEP-0163 personal
// eventing (PEP) nodes and their XEP-0060 items.
//
// pep_items.seq orders a node's items by publication: republishing an item id
// gives the item a new seq, so the item with the highest seq is the node's
// "last published item" (XEP-0060 §6.1.7, XEP-0163 §4.3.4).
const schemaPubSub = `
CREATE TABLE pep_nodes (
	username TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	node     TEXT    NOT NULL,                   -- XEP-0060 NodeID
	config   TEXT    NOT NULL CHECK (json_valid(config)), -- owned by mod/pep
	created  INTEGER NOT NULL,                   -- unix ms
	PRIMARY KEY (username, node)
) STRICT;

CREATE TABLE pep_items (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT, -- publication order, never reused
	username  TEXT    NOT NULL,
	node      TEXT    NOT NULL,
	item_id   TEXT    NOT NULL,                  -- XEP-0060 ItemID
	publisher TEXT    NOT NULL,                  -- JID of the publisher
	payload   BLOB    NOT NULL,                  -- serialized payload element
	published INTEGER NOT NULL,                  -- unix ms
	UNIQUE (username, node, item_id),
	FOREIGN KEY (username, node) REFERENCES pep_nodes(username, node) ON DELETE CASCADE
) STRICT;
CREATE INDEX pep_items_by_node ON pep_items (username, node, seq);
`

// PEPNode is one node of an account's personal eventing service (XEP-0163
// §2.1: every account is a virtual pubsub service).
type PEPNode struct {
	// Name is the NodeID (XEP-0060 §4.6), e.g. "urn:xmpp:avatar:metadata".
	Name string
	// Config is the node configuration as a JSON value; its fields are the
	// business of the caller (mod/pep), the store only checks it is JSON.
	Config []byte
	// Created is when the node was created (UTC, millisecond precision).
	Created time.Time
}

// PEPItem is one published item of a PEP node (XEP-0060 §7.1).
type PEPItem struct {
	// ID is the ItemID, unique within the node.
	ID string
	// Publisher is the JID that published the item.
	Publisher string
	// Payload is the serialized payload element, stored verbatim.
	Payload []byte
	// Published is when the item was (last) published (UTC, millisecond
	// precision).
	Published time.Time
}

// PEPNodeLast is a node with its last published item, for XEP-0163 §4.3.4
// last-item delivery.
type PEPNodeLast struct {
	// Node is the node, with its configuration.
	Node PEPNode
	// Item is the most recently published item, nil if the node is empty.
	Item *PEPItem
}

// PEPLimits bounds what [Store.PublishPEPItem] keeps. Zero or negative
// fields mean unlimited.
type PEPLimits struct {
	// MaxItems is how many items the node keeps: after the publication the
	// oldest items beyond it are deleted (XEP-0060 pubsub#max_items).
	MaxItems int
	// MaxNodes caps the account's nodes when the publication creates one;
	// creating one more fails with [ErrQuotaExceeded].
	MaxNodes int
	// MaxBytes caps the total payload bytes of all the account's items;
	// a publication that would exceed it fails with [ErrQuotaExceeded] and
	// changes nothing.
	MaxBytes int64
}

// PEPNodes returns username's PEP nodes sorted by name (byte order).
// Returns an error matching [ErrNotFound] if there is no such account.
func (s *Store) PEPNodes(ctx context.Context, username string) ([]PEPNode, error) {
	var out []PEPNode
	err := s.read(ctx, fmt.Sprintf("PEP nodes of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT node, config, created FROM pep_nodes
			WHERE username = ? ORDER BY node`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				n      PEPNode
				config string
				ms     int64
			)
			if err := rows.Scan(&n.Name, &config, &ms); err != nil {
				return err
			}
			n.Config, n.Created = []byte(config), fromMillis(ms)
			out = append(out, n)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PEPNode returns username's node named node. Returns an error matching
// [ErrNotFound] if there is no such account or node.
func (s *Store) PEPNode(ctx context.Context, username, node string) (PEPNode, error) {
	var n PEPNode
	err := s.read(ctx, fmt.Sprintf("PEP node %q of %q", node, username), func(tx *sql.Tx) error {
		var err error
		n, err = pepNode(ctx, tx, username, node)
		return err
	})
	return n, err
}

func pepNode(ctx context.Context, q queryer, username, node string) (PEPNode, error) {
	var (
		config string
		ms     int64
	)
	err := q.QueryRowContext(ctx, `SELECT config, created FROM pep_nodes WHERE username = ? AND node = ?`,
		username, node).Scan(&config, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return PEPNode{}, notFound("PEP node %q of %q", node, username)
	}
	if err != nil {
		return PEPNode{}, err
	}
	return PEPNode{Name: node, Config: []byte(config), Created: fromMillis(ms)}, nil
}

// CreatePEPNode creates username's node with the JSON configuration config
// at time created (XEP-0060 §8.1). If maxNodes > 0 and the account already
// has maxNodes nodes, it fails with [ErrQuotaExceeded]. Returns an error
// matching [ErrExists] if the node exists, [ErrNotFound] if there is no
// such account, or a plain error if config is not JSON.
func (s *Store) CreatePEPNode(ctx context.Context, username, node string, config []byte, created time.Time, maxNodes int) error {
	return s.write(ctx, fmt.Sprintf("create PEP node %q of %q", node, username), func(tx *sql.Tx) error {
		return createPEPNode(ctx, tx, username, node, config, created, maxNodes)
	})
}

func createPEPNode(ctx context.Context, tx *sql.Tx, username, node string, config []byte, created time.Time, maxNodes int) error {
	if err := requireAccount(ctx, tx, username); err != nil {
		return err
	}
	if _, err := pepNode(ctx, tx, username, node); err == nil {
		return fmt.Errorf("%w: PEP node %q of %q", ErrExists, node, username)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if maxNodes > 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pep_nodes WHERE username = ?`, username).Scan(&n); err != nil {
			return err
		}
		if n >= maxNodes {
			return fmt.Errorf("%w: %q has %d PEP nodes (limit %d)", ErrQuotaExceeded, username, n, maxNodes)
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO pep_nodes (username, node, config, created) VALUES (?, ?, ?, ?)`,
		username, node, string(config), millis(created))
	return err
}

// ConfigurePEPNode replaces the JSON configuration of username's node
// (XEP-0060 §8.2) and, if maxItems > 0, deletes its oldest items beyond
// maxItems. Returns an error matching [ErrNotFound] if there is no such
// account or node, or a plain error if config is not JSON.
func (s *Store) ConfigurePEPNode(ctx context.Context, username, node string, config []byte, maxItems int) error {
	return s.write(ctx, fmt.Sprintf("configure PEP node %q of %q", node, username), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pep_nodes SET config = ? WHERE username = ? AND node = ?`,
			string(config), username, node)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("PEP node %q of %q", node, username)
		}
		return trimPEPItems(ctx, tx, username, node, maxItems)
	})
}

// DeletePEPNode deletes username's node and all its items (XEP-0060 §8.4).
// Returns an error matching [ErrNotFound] if there is no such account or
// node.
func (s *Store) DeletePEPNode(ctx context.Context, username, node string) error {
	return s.write(ctx, fmt.Sprintf("delete PEP node %q of %q", node, username), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM pep_nodes WHERE username = ? AND node = ?`, username, node)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("PEP node %q of %q", node, username)
		}
		return nil
	})
}

// PurgePEPNode deletes all items of username's node, keeping the node
// (XEP-0060 §8.5), and returns how many were deleted. Returns an error
// matching [ErrNotFound] if there is no such account or node.
func (s *Store) PurgePEPNode(ctx context.Context, username, node string) (int, error) {
	var n int64
	err := s.write(ctx, fmt.Sprintf("purge PEP node %q of %q", node, username), func(tx *sql.Tx) error {
		if _, err := pepNode(ctx, tx, username, node); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM pep_items WHERE username = ? AND node = ?`, username, node)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// PublishPEPItem stores item in username's node (XEP-0060 §7.1) as its most
// recent item, replacing an item with the same ID, then deletes the oldest
// items beyond lim.MaxItems. If the node does not exist and create is
// non-nil, the node is first created with the JSON configuration create at
// item.Published (XEP-0060 §7.1.4 auto-create) and created is true. All of
// it happens in one transaction.
//
// Errors: [ErrNotFound] if there is no such account, or no such node and
// create is nil; [ErrQuotaExceeded] if lim.MaxNodes or lim.MaxBytes would
// be exceeded (nothing is changed); a plain error for an empty item ID or a
// create that is not JSON.
func (s *Store) PublishPEPItem(ctx context.Context, username, node string, item PEPItem, create []byte, lim PEPLimits) (created bool, err error) {
	op := fmt.Sprintf("publish PEP item %q to %q of %q", item.ID, node, username)
	if item.ID == "" {
		return false, wrap(op, errors.New("empty item ID"))
	}
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		created = false
		if _, err := pepNode(ctx, tx, username, node); errors.Is(err, ErrNotFound) && create != nil {
			if err := createPEPNode(ctx, tx, username, node, create, item.Published, lim.MaxNodes); err != nil {
				return err
			}
			created = true
		} else if err != nil {
			if errors.Is(err, ErrNotFound) {
				if err := requireAccount(ctx, tx, username); err != nil {
					return err
				}
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM pep_items WHERE username = ? AND node = ? AND item_id = ?`,
			username, node, item.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pep_items (username, node, item_id, publisher, payload, published)
			VALUES (?, ?, ?, ?, ?, ?)`,
			username, node, item.ID, item.Publisher, nonNil(item.Payload), millis(item.Published)); err != nil {
			return err
		}
		if err := trimPEPItems(ctx, tx, username, node, lim.MaxItems); err != nil {
			return err
		}
		if lim.MaxBytes > 0 {
			var total int64
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(length(payload)), 0) FROM pep_items WHERE username = ?`,
				username).Scan(&total); err != nil {
				return err
			}
			if total > lim.MaxBytes {
				return fmt.Errorf("%w: PEP items of %q would take %d bytes (limit %d)", ErrQuotaExceeded, username, total, lim.MaxBytes)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// trimPEPItems deletes the oldest items of a node beyond max (max <= 0: none).
func trimPEPItems(ctx context.Context, tx *sql.Tx, username, node string, max int) error {
	if max <= 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM pep_items WHERE username = ? AND node = ? AND seq NOT IN
		(SELECT seq FROM pep_items WHERE username = ? AND node = ? ORDER BY seq DESC LIMIT ?)`,
		username, node, username, node, max)
	return err
}

// PEPItems returns items of username's node oldest first (XEP-0060 §6.5):
// with ids, only the items with those IDs (unknown IDs are skipped);
// otherwise all items, or only the last most recent ones if last > 0
// (XEP-0060 §6.5.7 max_items). Returns an error matching [ErrNotFound] if
// there is no such account or node.
func (s *Store) PEPItems(ctx context.Context, username, node string, ids []string, last int) ([]PEPItem, error) {
	var out []PEPItem
	err := s.read(ctx, fmt.Sprintf("PEP items of %q of %q", node, username), func(tx *sql.Tx) error {
		if _, err := pepNode(ctx, tx, username, node); err != nil {
			return err
		}
		q := `SELECT item_id, publisher, payload, published FROM pep_items WHERE username = ? AND node = ?`
		args := []any{username, node}
		switch {
		case len(ids) > 0:
			q += ` AND item_id IN (?` + strings.Repeat(", ?", len(ids)-1) + `) ORDER BY seq`
			for _, id := range ids {
				args = append(args, id)
			}
		case last > 0:
			q = `SELECT item_id, publisher, payload, published FROM (SELECT seq, item_id, publisher, payload, published
				FROM pep_items WHERE username = ? AND node = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`
			args = append(args, last)
		default:
			q += ` ORDER BY seq`
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			it, err := scanPEPItem(rows)
			if err != nil {
				return err
			}
			out = append(out, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func scanPEPItem(rows *sql.Rows) (PEPItem, error) {
	var (
		it PEPItem
		ms int64
	)
	if err := rows.Scan(&it.ID, &it.Publisher, &it.Payload, &ms); err != nil {
		return PEPItem{}, err
	}
	it.Published = fromMillis(ms)
	return it, nil
}

// RetractPEPItems deletes the items with the given IDs from username's node
// (XEP-0060 §7.2), all or none: if any ID is not in the node nothing is
// deleted. Returns an error matching [ErrNotFound] if there is no such
// account, node or item.
func (s *Store) RetractPEPItems(ctx context.Context, username, node string, ids []string) error {
	return s.write(ctx, fmt.Sprintf("retract PEP items from %q of %q", node, username), func(tx *sql.Tx) error {
		if _, err := pepNode(ctx, tx, username, node); err != nil {
			return err
		}
		for _, id := range ids {
			res, err := tx.ExecContext(ctx, `DELETE FROM pep_items WHERE username = ? AND node = ? AND item_id = ?`,
				username, node, id)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return notFound("PEP item %q in %q of %q", id, node, username)
			}
		}
		return nil
	})
}

// PEPLastItems returns each of username's nodes, sorted by name, with its
// last published item (XEP-0163 §4.3.4), read as one snapshot. Returns an
// error matching [ErrNotFound] if there is no such account.
func (s *Store) PEPLastItems(ctx context.Context, username string) ([]PEPNodeLast, error) {
	var out []PEPNodeLast
	err := s.read(ctx, fmt.Sprintf("last PEP items of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT n.node, n.config, n.created,
				i.item_id, i.publisher, i.payload, i.published
			FROM pep_nodes n
			LEFT JOIN pep_items i ON i.seq =
				(SELECT max(seq) FROM pep_items WHERE username = n.username AND node = n.node)
			WHERE n.username = ?
			ORDER BY n.node`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				nl        PEPNodeLast
				config    string
				created   int64
				id, pub   sql.NullString
				payload   []byte
				published sql.Null[int64]
			)
			if err := rows.Scan(&nl.Node.Name, &config, &created, &id, &pub, &payload, &published); err != nil {
				return err
			}
			nl.Node.Config, nl.Node.Created = []byte(config), fromMillis(created)
			if id.Valid {
				nl.Item = &PEPItem{ID: id.String, Publisher: pub.String, Payload: payload, Published: fromNullMillis(published)}
			}
			out = append(out, nl)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
