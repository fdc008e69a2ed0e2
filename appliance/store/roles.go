package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrLastAdmin reports that a change would leave no administrator who can
// log in (returned, wrapped, by [Store.SetRoleKeepAdmin]).
var ErrLastAdmin = errors.New("store: this is the last administrator")

// SetRoleKeepAdmin sets username's role (RoleLimited, RoleNormal or
// RoleAdmin) like [Store.SetRole], but in the same transaction refuses to
// take the role RoleAdmin from the last administrator: when username is
// an administrator, role is not RoleAdmin and no other administrator that
// is not marked for deletion exists, it returns an error matching
// [ErrLastAdmin] and changes nothing. It returns the previous role. Other
// errors: [ErrNotFound] if there is no such account, a plain error for an
// unknown role.
func (s *Store) SetRoleKeepAdmin(ctx context.Context, username, role string) (string, error) {
	op := fmt.Sprintf("set role of %q", username)
	if !validRole[role] {
		return "", wrap(op, fmt.Errorf("invalid role %q", role))
	}
	old := RoleNormal
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT role FROM account_roles WHERE username = ?`, username).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if old == RoleAdmin && role != RoleAdmin {
			n, err := countAdmins(ctx, tx, username)
			if err != nil {
				return err
			}
			if n == 0 {
				return ErrLastAdmin
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO account_roles (username, role) VALUES (?, ?)
			ON CONFLICT (username) DO UPDATE SET role = excluded.role`, username, role)
		return err
	})
	return old, err
}

// MarkAccountDeletionKeepAdmin marks username for deletion at due and
// locks it (its SCRAM keys held aside, FAST tokens and password reset links
// dropped), and in the same transaction
// refuses to mark the last administrator who can log in: when username has
// the role RoleAdmin and no other administrator that is not marked for
// deletion exists, it returns an error matching [ErrLastAdmin] and changes
// nothing. Two administrators marking each other at the same instant thus
// cannot both succeed (writes are serialized: BEGIN IMMEDIATE). Deleting
// an account at once is safe through it too: mark it here with due =
// now, then [Store.DeleteAccount] (a marked administrator no longer
// counts). Other errors: [ErrNotFound] if there is no such account,
// [ErrExists] if it is already marked.
func (s *Store) MarkAccountDeletionKeepAdmin(ctx context.Context, username, requestedBy string, requested, due time.Time) error {
	return s.write(ctx, fmt.Sprintf("mark account %q for deletion", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if marked, err := isMarked(ctx, tx, username); err != nil {
			return err
		} else if marked {
			return fmt.Errorf("%w: deletion of %q", ErrExists, username)
		}
		role := RoleNormal
		err := tx.QueryRowContext(ctx, `SELECT role FROM account_roles WHERE username = ?`, username).Scan(&role)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if role == RoleAdmin {
			n, err := countAdmins(ctx, tx, username)
			if err != nil {
				return err
			}
			if n == 0 {
				return ErrLastAdmin
			}
		}
		return markAccountDeletion(ctx, tx, username, requestedBy, requested, due)
	})
}

// CountAdmins returns how many accounts have the role RoleAdmin and are
// not marked for deletion (the administrators who can log in).
func (s *Store) CountAdmins(ctx context.Context) (int, error) {
	n, err := countAdmins(ctx, s.r, "")
	return n, wrap("count administrators", err)
}

// countAdmins counts the administrators not marked for deletion, other
// than except.
func countAdmins(ctx context.Context, q queryer, except string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM account_roles r WHERE r.role = 'admin' AND r.username != ?
		AND NOT EXISTS (SELECT 1 FROM account_deletions d WHERE d.username = r.username)`, except).Scan(&n)
	return n, err
}
