package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// schemaInvites holds account roles, invitations (XEP-0401, XEP-0445) and
// circles (groups whose members have each other in their rosters).
const schemaInvites = `
-- Hearth's account roles. An account without a row has the role 'normal'.
CREATE TABLE account_roles (
	username TEXT NOT NULL PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
	role     TEXT NOT NULL CHECK (role IN ('limited', 'normal', 'admin'))
) STRICT;

-- Invitations. The token is kept as is (the administrator lists and shares
-- the links again); it is never logged.
CREATE TABLE invites (
	token    TEXT    NOT NULL PRIMARY KEY,
	created  INTEGER NOT NULL,                       -- unix ms
	expires  INTEGER NOT NULL,                       -- unix ms
	inviter  TEXT    NOT NULL DEFAULT '',            -- localpart; '' = the operator (CLI)
	role     TEXT    NOT NULL CHECK (role IN ('limited', 'normal', 'admin')),
	max_uses INTEGER NOT NULL CHECK (max_uses >= 0), -- 0 = unlimited
	uses     INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
	note     TEXT    NOT NULL DEFAULT '',
	revoked  INTEGER                                 -- unix ms, NULL = not revoked
) STRICT;

CREATE TABLE invite_circles (
	token  TEXT NOT NULL REFERENCES invites(token) ON DELETE CASCADE,
	circle TEXT NOT NULL,
	PRIMARY KEY (token, circle)
) STRICT;

-- Who registered with an invitation (kept after the account is deleted).
CREATE TABLE invite_uses (
	token    TEXT    NOT NULL REFERENCES invites(token) ON DELETE CASCADE,
	username TEXT    NOT NULL,
	used     INTEGER NOT NULL,                       -- unix ms
	PRIMARY KEY (token, username)
) STRICT;

-- Circles: their members have each other in their rosters (shared roster).
CREATE TABLE circles (
	name    TEXT    NOT NULL PRIMARY KEY,
	created INTEGER NOT NULL                         -- unix ms
) STRICT;

CREATE TABLE circle_members (
	circle   TEXT NOT NULL REFERENCES circles(name) ON DELETE CASCADE,
	username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	PRIMARY KEY (circle, username)
) STRICT;
CREATE INDEX circle_members_by_user ON circle_members (username);
`

// Account roles. RoleNormal is the role of an account without a stored role.
const (
	// RoleLimited is an account that may chat but not invite others.
	RoleLimited = "limited"
	// RoleNormal is an ordinary family member.
	RoleNormal = "normal"
	// RoleAdmin administers the server (web admin pages, invites of any role).
	RoleAdmin = "admin"
)

// SettingRegistration is the settings key of the registration policy:
// "open" lets anyone register in-band without an invitation (XEP-0077);
// anything else, or no value, means invitations only (the default).
const SettingRegistration = "registration"

// ErrAdminExists reports that an administrator account already exists
// (returned, wrapped, by [Store.CreateFirstAdmin]).
var ErrAdminExists = errors.New("store: an administrator already exists")

// validRole lists the roles the schema accepts.
var validRole = map[string]bool{RoleLimited: true, RoleNormal: true, RoleAdmin: true}

// Invite is one invitation (XEP-0401 §3 invitation token).
type Invite struct {
	// Token is the secret in the invitation link and xmpp: URI.
	Token string
	// Created and Expires bound the validity (UTC, millisecond precision).
	Created, Expires time.Time
	// Inviter is the localpart of the account that created the invitation,
	// "" when the operator made it with the CLI.
	Inviter string
	// Role is the role given to accounts registered with it (RoleLimited,
	// RoleNormal or RoleAdmin).
	Role string
	// MaxUses is how many accounts may register with it: 1 for a personal
	// invitation, more for a group invitation, 0 for no limit.
	MaxUses int
	// Uses is how many accounts have registered with it.
	Uses int
	// Note is the administrator's free text ("for grandma's tablet").
	Note string
	// Revoked is when it was revoked, the zero time if it was not.
	Revoked time.Time
	// Circles are the circles joined by accounts registered with it, sorted.
	Circles []string
	// UsedBy lists the registrations made with it, oldest first (filled by
	// [Store.Invite] and [Store.Invites]).
	UsedBy []InviteUse
}

// InviteUse is one registration made with an invitation.
type InviteUse struct {
	// Username is the localpart of the account registered.
	Username string
	// At is when it registered (UTC).
	At time.Time
}

// CreateInvite stores inv (Token, Created, Expires, Inviter, Role,
// MaxUses, Note and Circles; Uses, Revoked and UsedBy are ignored). It
// returns an error matching [ErrExists] if the token is taken, or a plain
// error for an empty token, an unknown role, a negative MaxUses or an
// expiry not after creation.
func (s *Store) CreateInvite(ctx context.Context, inv Invite) error {
	op := "create invite"
	switch {
	case inv.Token == "":
		return wrap(op, errors.New("empty token"))
	case !validRole[inv.Role]:
		return wrap(op, fmt.Errorf("invalid role %q", inv.Role))
	case inv.MaxUses < 0:
		return wrap(op, fmt.Errorf("negative max uses %d", inv.MaxUses))
	case !inv.Expires.After(inv.Created):
		return wrap(op, errors.New("expiry not after creation"))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO invites (token, created, expires, inviter, role, max_uses, note)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (token) DO NOTHING`,
			inv.Token, millis(inv.Created), millis(inv.Expires), inv.Inviter, inv.Role, inv.MaxUses, inv.Note)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: invite token", ErrExists)
		}
		for _, c := range inv.Circles {
			if _, err := tx.ExecContext(ctx, `INSERT INTO invite_circles (token, circle) VALUES (?, ?)
				ON CONFLICT DO NOTHING`, inv.Token, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// Invite returns the invitation with token, with its circles and uses.
// Returns an error matching [ErrNotFound] if there is none.
func (s *Store) Invite(ctx context.Context, token string) (Invite, error) {
	var inv Invite
	err := s.read(ctx, "invite", func(tx *sql.Tx) error {
		var err error
		inv, err = readInvite(ctx, tx, token)
		return err
	})
	return inv, err
}

// Invites returns every invitation, newest first, with circles and uses.
func (s *Store) Invites(ctx context.Context) ([]Invite, error) {
	var out []Invite
	err := s.read(ctx, "list invites", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT token FROM invites ORDER BY created DESC, token`)
		if err != nil {
			return err
		}
		var tokens []string
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return err
			}
			tokens = append(tokens, t)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, t := range tokens {
			inv, err := readInvite(ctx, tx, t)
			if err != nil {
				return err
			}
			out = append(out, inv)
		}
		return nil
	})
	return out, err
}

// RevokeInvite marks the invitation with token revoked at t (a second
// revocation keeps the first time). Returns an error matching
// [ErrNotFound] if there is none.
func (s *Store) RevokeInvite(ctx context.Context, token string, t time.Time) error {
	return s.write(ctx, "revoke invite", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE invites SET revoked = coalesce(revoked, ?) WHERE token = ?`, millis(t), token)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("invite")
		}
		return nil
	})
}

// DeleteInvites deletes the invitations that expired or were revoked
// before t and returns how many.
func (s *Store) DeleteInvites(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "delete invites", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM invites WHERE expires < ? OR revoked < ?`, millis(before), millis(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// RedeemInvite registers the account username with keys through the
// invitation token, in one transaction: check is called with the current
// invitation (its policy: expiry, revocation, uses left) and its error, if
// any, is returned unchanged with nothing written; then the account is
// created with the invitation's role, the use is counted and recorded, and
// the account joins the invitation's circles (created as needed). It
// returns the invitation as read before the use. Errors: [ErrNotFound] for
// an unknown token, [ErrExists] if the account exists, a plain error for
// malformed keys, or check's error.
func (s *Store) RedeemInvite(ctx context.Context, token, username string, keys []ScramKey, check func(Invite) error) (Invite, error) {
	op := fmt.Sprintf("redeem invite for %q", username)
	if username == "" {
		return Invite{}, wrap(op, errors.New("empty username"))
	}
	if err := validateKeys(keys); err != nil {
		return Invite{}, wrap(op, err)
	}
	var inv Invite
	var checkErr error
	gen := s.accounts().generation()
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		var err error
		if inv, err = readInvite(ctx, tx, token); err != nil {
			return err
		}
		if checkErr = check(inv); checkErr != nil {
			return checkErr
		}
		now := millis(s.now())
		if err := insertAccount(ctx, tx, username, keys, now); err != nil {
			return err
		}
		if inv.Role != RoleNormal {
			if _, err := tx.ExecContext(ctx, `INSERT INTO account_roles (username, role) VALUES (?, ?)`, username, inv.Role); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE invites SET uses = uses + 1 WHERE token = ?`, token); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO invite_uses (token, username, used) VALUES (?, ?, ?)
			ON CONFLICT DO NOTHING`, token, username, now); err != nil {
			return err
		}
		for _, c := range inv.Circles {
			if err := joinCircle(ctx, tx, c, username, now); err != nil {
				return err
			}
		}
		return nil
	})
	if checkErr != nil {
		return inv, checkErr
	}
	if err == nil {
		s.accounts().add(username, gen)
	}
	return inv, err
}

// CreateFirstAdmin creates the account username with keys and the role
// RoleAdmin, in one transaction, only if no administrator exists yet (the
// setup wizard's first step). Errors: [ErrAdminExists], [ErrExists] if the
// account exists, or a plain error for malformed keys.
func (s *Store) CreateFirstAdmin(ctx context.Context, username string, keys []ScramKey) error {
	op := fmt.Sprintf("create first admin %q", username)
	if username == "" {
		return wrap(op, errors.New("empty username"))
	}
	if err := validateKeys(keys); err != nil {
		return wrap(op, err)
	}
	gen := s.accounts().generation()
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM account_roles WHERE role = 'admin'`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrAdminExists
		}
		if err := insertAccount(ctx, tx, username, keys, millis(s.now())); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO account_roles (username, role) VALUES (?, 'admin')`, username)
		return err
	})
	if errors.Is(err, ErrAdminExists) {
		return ErrAdminExists
	}
	if err == nil {
		s.accounts().add(username, gen)
	}
	return err
}

// insertAccount creates the account row and its keys inside tx; ErrExists
// if the username is taken.
func insertAccount(ctx context.Context, tx *sql.Tx, username string, keys []ScramKey, now int64) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO accounts (username, created) VALUES (?, ?)
		ON CONFLICT (username) DO NOTHING`, username, now)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%w: account %q", ErrExists, username)
	}
	return insertKeys(ctx, tx, username, keys)
}

// Role returns username's role (RoleNormal when none is stored). Returns
// an error matching [ErrNotFound] if there is no such account.
func (s *Store) Role(ctx context.Context, username string) (string, error) {
	role := RoleNormal
	err := s.read(ctx, fmt.Sprintf("role of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT role FROM account_roles WHERE username = ?`, username).Scan(&role)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	return role, err
}

// SetRole sets username's role (RoleLimited, RoleNormal or RoleAdmin).
// Returns an error matching [ErrNotFound] if there is no such account, or
// a plain error for an unknown role.
func (s *Store) SetRole(ctx context.Context, username, role string) error {
	op := fmt.Sprintf("set role of %q", username)
	if !validRole[role] {
		return wrap(op, fmt.Errorf("invalid role %q", role))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO account_roles (username, role) VALUES (?, ?)
			ON CONFLICT (username) DO UPDATE SET role = excluded.role`, username, role)
		return err
	})
}

// Roles returns the stored role of every account that has one other than
// RoleNormal, by username.
func (s *Store) Roles(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	rows, err := s.r.QueryContext(ctx, `SELECT username, role FROM account_roles`)
	if err != nil {
		return nil, wrap("list roles", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u, r string
		if err := rows.Scan(&u, &r); err != nil {
			return nil, wrap("list roles", err)
		}
		if r != RoleNormal {
			out[u] = r
		}
	}
	return out, wrap("list roles", rows.Err())
}

// HasAdmin reports whether at least one account has the role RoleAdmin.
func (s *Store) HasAdmin(ctx context.Context) (bool, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM account_roles WHERE role = 'admin'`).Scan(&n); err != nil {
		return false, wrap("has admin", err)
	}
	return n > 0, nil
}

// readInvite loads one invitation with its circles and uses.
func readInvite(ctx context.Context, tx *sql.Tx, token string) (Invite, error) {
	inv := Invite{Token: token}
	var created, expires int64
	var revoked sql.Null[int64]
	err := tx.QueryRowContext(ctx, `SELECT created, expires, inviter, role, max_uses, uses, note, revoked
		FROM invites WHERE token = ?`, token).
		Scan(&created, &expires, &inv.Inviter, &inv.Role, &inv.MaxUses, &inv.Uses, &inv.Note, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Invite{}, notFound("invite")
	}
	if err != nil {
		return Invite{}, err
	}
	inv.Created, inv.Expires, inv.Revoked = fromMillis(created), fromMillis(expires), fromNullMillis(revoked)
	rows, err := tx.QueryContext(ctx, `SELECT circle FROM invite_circles WHERE token = ? ORDER BY circle`, token)
	if err != nil {
		return Invite{}, err
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return Invite{}, err
		}
		inv.Circles = append(inv.Circles, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Invite{}, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT username, used FROM invite_uses WHERE token = ? ORDER BY used, username`, token)
	if err != nil {
		return Invite{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var u InviteUse
		var at int64
		if err := rows.Scan(&u.Username, &at); err != nil {
			return Invite{}, err
		}
		u.At = fromMillis(at)
		inv.UsedBy = append(inv.UsedBy, u)
	}
	return inv, rows.Err()
}
