package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// schemaUpload is the XEP-0363 HTTP File Upload migration: one row per
// upload slot handed out, kept after the file was uploaded until retention
// removes both. The slot's URL token itself is never stored, only its
// digest (the id), which is also the file's name on disk: neither a copy of
// the database nor a listing of the upload directory reveals a URL.
const schemaUpload = `
CREATE TABLE uploads (
	id           TEXT    NOT NULL PRIMARY KEY,  -- hex SHA-256 of the slot's URL token
	username     TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	filename     TEXT    NOT NULL,              -- as requested (XEP-0363 §4), sanitised by the caller
	size         INTEGER NOT NULL CHECK (size > 0), -- bytes, exact
	content_type TEXT    NOT NULL DEFAULT '',   -- MIME type; '' = none given (yet)
	created      INTEGER NOT NULL,              -- unix ms, slot handed out
	uploaded     INTEGER                        -- unix ms, PUT completed; NULL = slot still open
) STRICT;
CREATE INDEX uploads_by_user ON uploads (username, created);
CREATE INDEX uploads_by_created ON uploads (created);
CREATE INDEX uploads_by_uploaded ON uploads (uploaded);
`

// Upload is one XEP-0363 upload slot and, once Uploaded is set, the file
// stored for it.
type Upload struct {
	// ID identifies the slot: the hex SHA-256 digest of the URL token
	// (64 characters), chosen by the caller; also the file's name on disk.
	ID string
	// Username is the owner's localpart.
	Username string
	// Filename is the file name the client asked for (XEP-0363 §4).
	Filename string
	// Size is the file's exact size in bytes (> 0).
	Size int64
	// ContentType is the file's MIME type; "" when the client gave none in
	// the request and the upload has not set one yet.
	ContentType string
	// Created is when the slot was handed out (UTC, millisecond precision).
	Created time.Time
	// Uploaded is when the PUT completed; zero while the slot is open.
	Uploaded time.Time
}

// ErrUploadDone reports that an upload slot was already used (its file is
// stored): XEP-0363 slots take one PUT.
var ErrUploadDone = errors.New("store: upload slot already used")

// UploadCheck is called by [Store.CreateUpload] inside its write
// transaction, so that its decision and the insertion are atomic. total is
// the number of bytes of every counted upload of every user; recent is the
// new slot's owner's counted uploads created after the time since given to
// CreateUpload, oldest first. An upload counts when its file is stored, or
// its slot is open and was created after openSince (a slot created at
// openSince or before has expired). A
// non-nil error refuses the slot; CreateUpload returns it wrapped
// (errors.As and errors.Is find it).
type UploadCheck func(total int64, recent []Upload) error

// CreateUpload records the new open slot u (u.Uploaded is ignored; u.Created
// is stored as given) after check (if not nil) accepted it, see
// [UploadCheck]. Returns an error matching [ErrNotFound] if u.Username has no
// account, [ErrExists] if u.ID is taken, or check's error.
func (s *Store) CreateUpload(ctx context.Context, u Upload, since, openSince time.Time, check UploadCheck) error {
	return s.write(ctx, fmt.Sprintf("create upload slot for %q", u.Username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, u.Username); err != nil {
			return err
		}
		if check != nil {
			var total int64
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(size), 0) FROM uploads
				WHERE uploaded IS NOT NULL OR created > ?`, millis(openSince)).Scan(&total); err != nil {
				return err
			}
			recent, err := queryUploads(ctx, tx, `WHERE username = ? AND created > ?
				AND (uploaded IS NOT NULL OR created > ?) ORDER BY created, id`,
				u.Username, millis(since), millis(openSince))
			if err != nil {
				return err
			}
			if err := check(total, recent); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO uploads (id, username, filename, size, content_type, created)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			u.ID, u.Username, u.Filename, u.Size, u.ContentType, millis(u.Created))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%w: upload id %s", ErrExists, u.ID)
		}
		return nil
	})
}

// GetUpload returns the slot with id. Returns an error matching
// [ErrNotFound] if there is none.
func (s *Store) GetUpload(ctx context.Context, id string) (Upload, error) {
	var out Upload
	err := s.read(ctx, "get upload", func(tx *sql.Tx) error {
		us, err := queryUploads(ctx, tx, `WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if len(us) == 0 {
			return notFound("upload %s", id)
		}
		out = us[0]
		return nil
	})
	return out, err
}

// FinishUpload marks the open slot id as used at t; a non-empty contentType
// replaces the stored one (the PUT's type when the request named none).
// Returns an error matching [ErrNotFound] if there is no such slot, or
// [ErrUploadDone] if it was already used.
func (s *Store) FinishUpload(ctx context.Context, id string, t time.Time, contentType string) error {
	return s.write(ctx, "finish upload", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE uploads SET uploaded = ?,
			content_type = CASE WHEN ? = '' THEN content_type ELSE ? END
			WHERE id = ? AND uploaded IS NULL`, millis(t), contentType, contentType, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM uploads WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("upload %s", id)
		} else if err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", ErrUploadDone, id)
	})
}

// ExpiredUploads returns up to limit (<= 0: 500) uploads that have expired:
// files uploaded at or before uploadedBy (none when it is zero: kept
// forever) and open slots created at or before openBy, oldest first.
func (s *Store) ExpiredUploads(ctx context.Context, uploadedBy, openBy time.Time, limit int) ([]Upload, error) {
	if limit <= 0 {
		limit = 500
	}
	var out []Upload
	err := s.read(ctx, "expired uploads", func(tx *sql.Tx) error {
		var err error
		if uploadedBy.IsZero() {
			out, err = queryUploads(ctx, tx, `WHERE uploaded IS NULL AND created <= ? ORDER BY created, id LIMIT ?`,
				millis(openBy), limit)
		} else {
			out, err = queryUploads(ctx, tx, `WHERE (uploaded IS NOT NULL AND uploaded <= ?)
				OR (uploaded IS NULL AND created <= ?) ORDER BY created, id LIMIT ?`,
				millis(uploadedBy), millis(openBy), limit)
		}
		return err
	})
	return out, err
}

// DeleteUploads deletes the uploads with the given ids and returns how many
// existed. Unknown ids are ignored.
func (s *Store) DeleteUploads(ctx context.Context, ids []string) (int64, error) {
	var n int64
	err := s.write(ctx, "delete uploads", func(tx *sql.Tx) error {
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 200)]
			ids = ids[len(chunk):]
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = id
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM uploads WHERE id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	return n, err
}

// DeleteUserUploads deletes every upload (files and open slots) of
// username and returns the deleted rows, so the caller can remove the
// files. It is not an error if there are none or no such account.
func (s *Store) DeleteUserUploads(ctx context.Context, username string) ([]Upload, error) {
	var out []Upload
	err := s.write(ctx, fmt.Sprintf("delete uploads of %q", username), func(tx *sql.Tx) error {
		var err error
		if out, err = queryUploads(ctx, tx, `WHERE username = ? ORDER BY created, id`, username); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM uploads WHERE username = ?`, username)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UploadIDs returns the ids of every upload row (files and open slots), for
// finding files on disk that no row accounts for.
func (s *Store) UploadIDs(ctx context.Context) (map[string]bool, error) {
	out := make(map[string]bool)
	err := s.read(ctx, "upload ids", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id FROM uploads`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out[id] = true
		}
		return rows.Err()
	})
	return out, err
}

// UploadStats is the storage taken by uploaded files (open slots are not
// counted).
type UploadStats struct {
	// Files is the number of stored files; Bytes their total size.
	Files int64
	Bytes int64
	// PerUser maps each username with stored files to their total size in
	// bytes.
	PerUser map[string]int64
}

// UploadStats returns the storage taken by uploaded files, in total and per
// user.
func (s *Store) UploadStats(ctx context.Context) (UploadStats, error) {
	st := UploadStats{PerUser: make(map[string]int64)}
	err := s.read(ctx, "upload stats", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT username, count(*), sum(size) FROM uploads
			WHERE uploaded IS NOT NULL GROUP BY username`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				user  string
				n, sz int64
			)
			if err := rows.Scan(&user, &n, &sz); err != nil {
				return err
			}
			st.PerUser[user] = sz
			st.Files += n
			st.Bytes += sz
		}
		return rows.Err()
	})
	return st, err
}

// queryUploads runs SELECT ... FROM uploads with the given tail (WHERE,
// ORDER BY, LIMIT) and arguments.
func queryUploads(ctx context.Context, tx *sql.Tx, tail string, args ...any) ([]Upload, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, username, filename, size, content_type, created, uploaded
		FROM uploads `+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Upload
	for rows.Next() {
		var (
			u        Upload
			created  int64
			uploaded sql.Null[int64]
		)
		if err := rows.Scan(&u.ID, &u.Username, &u.Filename, &u.Size, &u.ContentType, &created, &uploaded); err != nil {
			return nil, err
		}
		u.Created = fromMillis(created)
		u.Uploaded = fromNullMillis(uploaded)
		out = append(out, u)
	}
	return out, rows.Err()
}
