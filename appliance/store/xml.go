package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// VCard returns username's stored vCard (XEP-0054 vcard-temp): the
// serialized <vCard xmlns='vcard-temp'/> element exactly as passed to
// [Store.SetVCard]. Returns an error matching [ErrNotFound] if the user has
// no vCard or there is no such account.
func (s *Store) VCard(ctx context.Context, username string) ([]byte, error) {
	var data []byte
	err := s.r.QueryRowContext(ctx, `SELECT data FROM vcards WHERE username = ?`, username).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("vCard of %q", username)
	}
	if err != nil {
		return nil, wrap(fmt.Sprintf("vCard of %q", username), err)
	}
	return data, nil
}

// SetVCard stores vcard, a serialized <vCard xmlns='vcard-temp'/> element,
// as username's vCard (XEP-0054 §3.2), replacing any previous one. An empty
// or nil vcard deletes it. The store does not parse or limit the XML.
// Returns an error matching [ErrNotFound] if there is no such account.
func (s *Store) SetVCard(ctx context.Context, username string, vcard []byte) error {
	return s.write(ctx, fmt.Sprintf("set vCard of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if len(vcard) == 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM vcards WHERE username = ?`, username)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO vcards (username, data) VALUES (?, ?)
			ON CONFLICT (username) DO UPDATE SET data = excluded.data`, username, vcard)
		return err
	})
}

// PrivateXML returns the element username stored under namespace with
// XEP-0049 private XML storage (e.g. "storage:bookmarks"), exactly as
// passed to [Store.SetPrivateXML]. Returns an error matching [ErrNotFound]
// if nothing is stored under namespace or there is no such account.
func (s *Store) PrivateXML(ctx context.Context, username, namespace string) ([]byte, error) {
	var data []byte
	err := s.r.QueryRowContext(ctx, `SELECT data FROM private_xml WHERE username = ? AND namespace = ?`,
		username, namespace).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("private XML %q of %q", namespace, username)
	}
	if err != nil {
		return nil, wrap(fmt.Sprintf("private XML %q of %q", namespace, username), err)
	}
	return data, nil
}

// SetPrivateXML stores data, the serialized child element qualified by
// namespace, as username's private XML for that namespace (XEP-0049 §2),
// replacing any previous one. An empty or nil data deletes it. The store
// does not parse or limit the XML. Returns an error matching [ErrNotFound]
// if there is no such account.
func (s *Store) SetPrivateXML(ctx context.Context, username, namespace string, data []byte) error {
	return s.write(ctx, fmt.Sprintf("set private XML %q of %q", namespace, username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if len(data) == 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM private_xml WHERE username = ? AND namespace = ?`,
				username, namespace)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO private_xml (username, namespace, data) VALUES (?, ?, ?)
			ON CONFLICT (username, namespace) DO UPDATE SET data = excluded.data`, username, namespace, data)
		return err
	})
}
