package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SettingDomain is the settings key holding the XMPP domain this data
// directory serves (RFC 6120 §2.1 domainpart).
const SettingDomain = "domain"

// Setting returns the value stored under key. Returns an error matching
// [ErrNotFound] if the key is unset.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("setting %q", key)
	}
	if err != nil {
		return "", wrap(fmt.Sprintf("setting %q", key), err)
	}
	return v, nil
}

// SetSetting stores value under key, replacing any previous value.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	return s.write(ctx, fmt.Sprintf("set setting %q", key), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
}
