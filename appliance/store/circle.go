package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// schemaCircleRooms is the migration giving a circle its optional group
// chat: the bare JID of its XEP-0045 room (the empty string for a circle without one).
// The circles and circle_members tables themselves are in schemaInvites.
const schemaCircleRooms = `
ALTER TABLE circles ADD COLUMN room TEXT NOT NULL DEFAULT '';
`

// Circle is a group of accounts that have each other in their rosters
// (a shared roster), with an optional group chat.
type Circle struct {
	// Name is the circle's name, also the roster group of its members.
	Name string
	// Room is the bare JID of the circle's XEP-0045 room
	// ("family@groups.example.org"), "" when it has no group chat.
	Room string
	// Members are the member localparts, sorted.
	Members []string
}

// Circles returns every circle with its room and members, sorted by name.
func (s *Store) Circles(ctx context.Context) ([]Circle, error) {
	var out []Circle
	err := s.read(ctx, "list circles", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT c.name, c.room, m.username FROM circles c
			LEFT JOIN circle_members m ON m.circle = c.name ORDER BY c.name, m.username`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name, room string
			var member sql.NullString
			if err := rows.Scan(&name, &room, &member); err != nil {
				return err
			}
			if n := len(out); n == 0 || out[n-1].Name != name {
				out = append(out, Circle{Name: name, Room: room})
			}
			if member.Valid {
				last := &out[len(out)-1]
				last.Members = append(last.Members, member.String)
			}
		}
		return rows.Err()
	})
	return out, err
}

// Circle returns the circle named name with its room and members. Returns
// an error matching [ErrNotFound] if there is none.
func (s *Store) Circle(ctx context.Context, name string) (Circle, error) {
	c := Circle{Name: name}
	err := s.read(ctx, fmt.Sprintf("circle %q", name), func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT room FROM circles WHERE name = ?`, name).Scan(&c.Room)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("circle %q", name)
		}
		if err != nil {
			return err
		}
		c.Members, err = circleMembers(ctx, tx, name)
		return err
	})
	if err != nil {
		return Circle{}, err
	}
	return c, nil
}

// CircleMembers returns the sorted member localparts of circle (none for an
// unknown circle).
func (s *Store) CircleMembers(ctx context.Context, circle string) ([]string, error) {
	var out []string
	err := s.read(ctx, "circle members", func(tx *sql.Tx) error {
		var err error
		out, err = circleMembers(ctx, tx, circle)
		return err
	})
	return out, err
}

func circleMembers(ctx context.Context, tx *sql.Tx, circle string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT username FROM circle_members WHERE circle = ? ORDER BY username`, circle)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CreateCircle creates the empty circle name with the group chat room (a
// bare room JID, "" for none). Returns an error matching [ErrExists] if it
// exists, or a plain error for an empty name.
func (s *Store) CreateCircle(ctx context.Context, name, room string) error {
	op := fmt.Sprintf("create circle %q", name)
	if strings.TrimSpace(name) == "" {
		return wrap(op, errors.New("empty circle name"))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO circles (name, created, room) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			name, millis(s.now()), room)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: circle %q", ErrExists, name)
		}
		return nil
	})
}

// DeleteCircle deletes the circle name with its memberships, and takes it
// out of the invitations that would add their invitees to it (so a pending
// invitation does not create it again). Roster items are not the store's
// business here: they stay. Returns an error matching [ErrNotFound] if
// there is no such circle.
func (s *Store) DeleteCircle(ctx context.Context, name string) error {
	return s.write(ctx, fmt.Sprintf("delete circle %q", name), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM circles WHERE name = ?`, name) // circle_members: ON DELETE CASCADE
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("circle %q", name)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM invite_circles WHERE circle = ?`, name)
		return err
	})
}

// SetCircleRoom records room (a bare room JID, "" for none) as the group
// chat of the circle name. Returns an error matching [ErrNotFound] if
// there is no such circle.
func (s *Store) SetCircleRoom(ctx context.Context, name, room string) error {
	return s.write(ctx, fmt.Sprintf("set room of circle %q", name), func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE circles SET room = ? WHERE name = ?`, room, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return notFound("circle %q", name)
		}
		return nil
	})
}

// JoinCircle makes username a member of circle, creating the circle
// (without a room) if needed. Returns an error matching [ErrNotFound] if
// there is no such account, or a plain error for an empty circle name.
func (s *Store) JoinCircle(ctx context.Context, circle, username string) error {
	op := fmt.Sprintf("join circle %q", circle)
	if strings.TrimSpace(circle) == "" {
		return wrap(op, errors.New("empty circle name"))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		return joinCircle(ctx, tx, circle, username, millis(s.now()))
	})
}

// LeaveCircle removes username from circle (no error if not a member).
// The circle stays, also when empty.
func (s *Store) LeaveCircle(ctx context.Context, circle, username string) error {
	return s.write(ctx, fmt.Sprintf("leave circle %q", circle), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM circle_members WHERE circle = ? AND username = ?`, circle, username)
		return err
	})
}

// joinCircle adds username to circle inside tx, creating the circle if
// needed.
func joinCircle(ctx context.Context, tx *sql.Tx, circle, username string, now int64) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO circles (name, created) VALUES (?, ?) ON CONFLICT DO NOTHING`, circle, now); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO circle_members (circle, username) VALUES (?, ?) ON CONFLICT DO NOTHING`, circle, username)
	return err
}
