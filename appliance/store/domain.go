package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// SettingPreviousDomains is the settings key holding the JSON list of the
// domains this data directory served before RenameDomain changed it, oldest
// first: `hearth serve --domain OLD` is then accepted and serves the
// current domain.
const SettingPreviousDomains = "domain.previous"

// MaxAccountsForRename is how many accounts a data directory may have when
// its domain is renamed: the administrator the setup wizard made.
const MaxAccountsForRename = 1

// freshTables may hold rows when the domain is renamed: settings, the
// wizard's administrator (account, keys, role), web sessions, invitations
// and circles not used yet, and bookkeeping. Every other table must be
// empty: anything there (roster items, messages, archives, rooms, PEP
// items, uploads...) was made under the old domain.
var freshTables = []string{
	"settings", "accounts", "scram_keys", "held_scram_keys", "account_roles",
	"web_sessions", "password_resets", "fast_tokens", "invites", "invite_circles",
	"circles", "mam_prefs", "roster_seq", "schema_migrations", "sqlite_sequence",
}

// usedWords names tables in plain words for NotFreshError.
var usedWords = map[string]string{
	"roster_items":          "contact lists",
	"subscription_requests": "contact requests",
	"offline_messages":      "messages waiting for delivery",
	"mam_messages":          "archived messages",
	"muc_rooms":             "group chats",
	"muc_messages":          "group chat messages",
	"pep_items":             "published data (avatars, encryption keys)",
	"pep_nodes":             "published data (avatars, encryption keys)",
	"uploads":               "shared files",
	"vcards":                "profiles",
	"invite_uses":           "used invitations",
	"circle_members":        "circle members",
	"blocklist":             "blocked contacts",
	"private_xml":           "app settings stored on the server",
	"push_registrations":    "phones registered for notifications",
	"account_deletions":     "deleted accounts",
}

// NotFreshError is RenameDomain's refusal: the data directory already holds
// data made under the old domain.
type NotFreshError struct {
	// Accounts is the number of accounts (more than MaxAccountsForRename),
	// or 0 when the accounts are not the reason.
	Accounts int
	// Tables are the tables with rows that stop the rename (sorted).
	Tables []string
}

func (e *NotFreshError) Error() string {
	return "store: the domain can only be changed before anyone has chatted: " + e.Reason()
}

// Reason says in plain words what is in the way ("3 accounts exist";
// "there are contact lists, archived messages").
func (e *NotFreshError) Reason() string {
	var parts []string
	if e.Accounts > 0 {
		parts = append(parts, fmt.Sprintf("%d accounts exist (at most %d may)", e.Accounts, MaxAccountsForRename))
	}
	var words []string
	for _, t := range e.Tables {
		w := usedWords[t]
		if w == "" {
			w = "stored data (" + t + ")"
		}
		if !slices.Contains(words, w) {
			words = append(words, w)
		}
	}
	if len(words) > 0 {
		parts = append(parts, "there are "+strings.Join(words, ", "))
	}
	return strings.Join(parts, "; ")
}

// RenameDomain changes the domain this data directory serves
// (SettingDomain) from old to new in one transaction and appends old to
// SettingPreviousDomains. It is allowed only while the data is fresh: at
// most MaxAccountsForRename accounts and no rows in any table outside a
// small allowlist (settings, accounts and their keys and roles, web
// sessions, unused invitations and circles, bookkeeping); otherwise it
// returns a *NotFreshError and changes nothing. It returns an error
// matching ErrNotFound when the stored domain is not old, and does nothing
// when old equals new. Usernames are stored without the domain, so the
// accounts move along.
func (s *Store) RenameDomain(ctx context.Context, old, new string) error {
	if old == new {
		return nil
	}
	if new == "" {
		return errors.New("store: rename domain: empty domain")
	}
	return s.write(ctx, "rename domain", func(tx *sql.Tx) error {
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, SettingDomain).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) || err == nil && cur != old {
			return notFound("domain %q (the data directory serves %q)", old, cur)
		}
		if err != nil {
			return err
		}
		if err := checkFresh(ctx, tx); err != nil {
			return err
		}
		var prev []string
		var raw string
		err = tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, SettingPreviousDomains).Scan(&raw)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal([]byte(raw), &prev); err != nil {
				return fmt.Errorf("setting %q: %w", SettingPreviousDomains, err)
			}
		}
		prev = slices.DeleteFunc(prev, func(d string) bool { return d == new || d == old })
		prev = append(prev, old)
		b, _ := json.Marshal(prev)
		for k, v := range map[string]string{SettingDomain: new, SettingPreviousDomains: string(b)} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkFresh returns a *NotFreshError unless the data is fresh (see
// RenameDomain).
func checkFresh(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	sort.Strings(tables)
	nf := &NotFreshError{}
	for _, t := range tables {
		if slices.Contains(freshTables, t) {
			continue
		}
		var one int
		// Table names come from sqlite_master, quoted as identifiers.
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM "`+strings.ReplaceAll(t, `"`, `""`)+`" LIMIT 1`).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			nf.Tables = append(nf.Tables, t)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM accounts`).Scan(&n); err != nil {
		return err
	}
	if n > MaxAccountsForRename {
		nf.Accounts = n
	}
	if nf.Accounts > 0 || len(nf.Tables) > 0 {
		return nf
	}
	return nil
}

// PreviousDomains returns the domains this data directory served before
// (SettingPreviousDomains), oldest first; none is an empty list.
func (s *Store) PreviousDomains(ctx context.Context) ([]string, error) {
	raw, err := s.Setting(ctx, SettingPreviousDomains)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var prev []string
	if err := json.Unmarshal([]byte(raw), &prev); err != nil {
		return nil, fmt.Errorf("store: setting %q: %w", SettingPreviousDomains, err)
	}
	return prev, nil
}

// SetSettings stores several settings in one transaction (each replaces
// any previous value; an empty value deletes the key).
func (s *Store) SetSettings(ctx context.Context, kv map[string]string) error {
	return s.write(ctx, "set settings", func(tx *sql.Tx) error {
		for k, v := range kv {
			var err error
			if v == "" {
				_, err = tx.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, k)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
					ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
