package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// schemaMAM is the migration creating the tables for XEP-0313 message
// archives (one archive per account) and their XEP-0441 preferences.
//
// mam_messages.seq is the archive order (XEP-0313 §3.1: the order the user
// received or sent the messages, not their timestamps); AUTOINCREMENT keeps
// it increasing even after the newest rows were deleted. stanza_id is the
// XEP-0359 stanza-id, the archive UID clients see (XEP-0313 §6.2).
// The stamp index serves retention; queries filter on stamp without it (see
// archiveTable.where).
const schemaMAM = `
CREATE TABLE mam_messages (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	username      TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	stanza_id     TEXT    NOT NULL,               -- XEP-0359 stanza-id, unique in the archive
	with_jid      TEXT    NOT NULL,               -- bare JID of the other party
	with_resource TEXT    NOT NULL DEFAULT '',    -- its resource, '' for none
	outgoing      INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
	stamp         INTEGER NOT NULL,               -- unix ms, sent or received
	stanza        BLOB    NOT NULL,               -- serialized <message/>
	UNIQUE (username, stanza_id)
) STRICT;
CREATE INDEX mam_messages_by_user  ON mam_messages (username, seq);
CREATE INDEX mam_messages_by_with  ON mam_messages (username, with_jid, seq);
CREATE INDEX mam_messages_by_stamp ON mam_messages (stamp);

-- XEP-0441 archiving preferences; no row means never set.
CREATE TABLE mam_prefs (
	username     TEXT NOT NULL PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
	default_mode TEXT NOT NULL CHECK (default_mode IN ('always', 'never', 'roster'))
) STRICT;

CREATE TABLE mam_prefs_jids (
	username TEXT    NOT NULL REFERENCES mam_prefs(username) ON DELETE CASCADE,
	list     TEXT    NOT NULL CHECK (list IN ('always', 'never')),
	jid      TEXT    NOT NULL,
	pos      INTEGER NOT NULL,                    -- order as given
	PRIMARY KEY (username, list, jid)
) STRICT;
`

// DefaultArchiveBatch is the number of archived messages [Store.PruneArchive]
// and [Store.DeleteArchive] delete per transaction when given batch <= 0.
const DefaultArchiveBatch = 500

// ArchiveEntry is one message in a user's archive (XEP-0313 §3).
type ArchiveEntry struct {
	// Seq is the archive order: it increases with every entry appended to
	// any archive of the database and is never reused. Set by
	// [Store.AppendArchive]; ignored when appending.
	Seq int64
	// ID is the archive UID, sent to clients as the XEP-0359 stanza-id and
	// the XEP-0313 result id. Unique within the user's archive.
	ID string
	// With is the bare JID of the other party: the recipient of an outgoing
	// message, the sender of an incoming one (the user's own bare JID for a
	// message to oneself).
	With string
	// WithResource is the other party's resource, "" if it had none; it
	// serves 'with' filters on a full JID (XEP-0313 §4.1.1).
	WithResource string
	// Outgoing is true for a message the user sent, false for one received.
	Outgoing bool
	// Stamp is when the message was sent or received (UTC, millisecond
	// precision).
	Stamp time.Time
	// Stanza is the serialized <message/>, returned verbatim.
	Stanza []byte
}

// newArchiveID returns a new archive UID: 16 random bytes (128 bits) in
// unpadded base64url, 22 characters. XEP-0313 §3 requires unpredictable
// UIDs; at this size they are also unique in practice, across archives and
// deletions (§6.2: never reused).
func newArchiveID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// AppendArchive adds e as the newest entry of username's archive
// (XEP-0313 §3) and returns it as stored: Seq set, ID generated when e.ID is
// "" (see [ArchiveEntry.ID]), Stamp truncated to the millisecond in UTC. The
// entry is durable when AppendArchive returns. Returns an error matching
// [ErrNotFound] if there is no such account, [ErrExists] if e.ID is already
// in that archive, or a plain error if e.With is empty.
func (s *Store) AppendArchive(ctx context.Context, username string, e ArchiveEntry) (ArchiveEntry, error) {
	op := fmt.Sprintf("append to archive of %q", username)
	if e.With == "" {
		return ArchiveEntry{}, wrap(op, errors.New("empty With"))
	}
	if e.ID == "" {
		id, err := newArchiveID()
		if err != nil {
			return ArchiveEntry{}, wrap(op, err)
		}
		e.ID = id
	}
	e.Stamp = fromMillis(millis(e.Stamp))
	e.Stanza = nonNil(e.Stanza)
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		// The prepared INSERT (stmt.go); an unknown account shows as the
		// violation of mam_messages.username's foreign key (foreign_keys
		// is on), which saves a lookup per message.
		err := tx.StmtContext(ctx, s.ws.appendArchive).QueryRowContext(ctx,
			username, e.ID, e.With, e.WithResource, e.Outgoing, millis(e.Stamp), e.Stanza).Scan(&e.Seq)
		var se sqlite3.Error
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: archive id %q of %q", ErrExists, e.ID, username)
		case errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintForeignKey:
			return notFound("account %q", username)
		}
		return err
	})
	if err != nil {
		return ArchiveEntry{}, err
	}
	return e, nil
}

// ArchiveQuery selects and pages entries of one archive. The filters
// (With, WithResource, Start, End, AfterID, BeforeID, IDs) define the result
// set (XEP-0313 §4.1); After, Before, Last, Index and Max choose one page of
// it (XEP-0059 §2). The zero value selects the first page of size 0, that
// is only the count.
type ArchiveQuery struct {
	// With, if not "", keeps entries whose With equals it (a bare JID).
	// WithResource, if also not "", keeps only those whose WithResource
	// equals it (a 'with' filter on a full JID, XEP-0313 §4.1.1).
	With, WithResource string
	// Start and End, if not zero, keep entries with Start <= Stamp <= End
	// (XEP-0313 §4.1.2), compared in milliseconds (Start rounded up, End
	// down).
	Start, End time.Time
	// AfterID and BeforeID, if not "", keep entries after (before) the entry
	// with that ID in archive order, exclusive (XEP-0313 §4.1.3).
	AfterID, BeforeID string
	// IDs, if not empty, keeps only entries with these IDs (XEP-0313 §4.1.3).
	IDs []string

	// After, if not "", pages forward from the entry with that ID: the page
	// is the first Max entries of the set after it (XEP-0059 §2.2).
	After string
	// Before, if not "", pages backward from the entry with that ID: the
	// page is the last Max entries of the set before it (XEP-0059 §2.3).
	// With After too, the page is the last Max entries between both.
	Before string
	// Last requests the last page when Before is "" (XEP-0059 §2.5, an
	// empty <before/>).
	Last bool
	// Index, when After, Before and Last are unset, skips that many entries
	// of the set (XEP-0059 §2.6); ignored otherwise.
	Index int
	// Max is the page size; 0 returns no entries, only the count
	// (XEP-0059 §2.7). Negative is treated as 0. The store imposes no upper
	// bound: that is the caller's policy.
	Max int
}

// ArchivePage is one page of an archive query result.
type ArchivePage struct {
	// Entries is the page in archive order (oldest first).
	Entries []ArchiveEntry
	// Complete is true when no further page exists in the paging
	// direction: after the page when paging forward, before it when paging
	// backward (XEP-0313 §4.3.2 'complete').
	Complete bool
	// Count is the size of the whole result set (XEP-0059 <count/>).
	Count int
	// FirstIndex is the position of Entries[0] within the result set
	// (XEP-0059 <first index=.../>); 0 when Entries is empty.
	FirstIndex int
}

// QueryArchive returns one page of username's archive selected by q, read
// as one consistent snapshot. Returns an error matching [ErrNotFound] if
// there is no such account, or if After, Before, AfterID, BeforeID or one of
// IDs names no entry of that archive (XEP-0313 §4.1.3, §4.3.2:
// item-not-found).
func (s *Store) QueryArchive(ctx context.Context, username string, q ArchiveQuery) (ArchivePage, error) {
	var page ArchivePage
	err := s.read(ctx, fmt.Sprintf("query archive of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		var err error
		page, err = userArchive.page(ctx, tx, username, q)
		return err
	})
	if err != nil {
		return ArchivePage{}, err
	}
	return page, nil
}

// archiveTable describes one archive table for the query code shared by
// the user archive (mam_messages) and the room archive (muc_messages).
type archiveTable struct {
	table, owner string // table name and its owner column
	// with and resource are the columns ArchiveQuery.With and WithResource
	// filter on; with "" means With is not a filter here.
	with, resource string
	// columns selects, in order, seq, stanza_id, With, WithResource,
	// Outgoing, stamp and stanza.
	columns string
	// what names an archive in errors, with the owner as its %q argument.
	what string
}

var (
	userArchive = archiveTable{table: "mam_messages", owner: "username", with: "with_jid", resource: "with_resource",
		columns: "seq, stanza_id, with_jid, with_resource, outgoing, stamp, stanza", what: "archive of %q"}
	roomArchive = archiveTable{table: "muc_messages", owner: "room", resource: "nick",
		columns: "seq, stanza_id, real_jid, nick, 0, stamp, stanza", what: "archive of MUC room %q"}
)

// page reads one page of owner's archive selected by q inside tx (see
// QueryArchive for the semantics and errors).
func (t archiveTable) page(ctx context.Context, tx *sql.Tx, owner string, q ArchiveQuery) (ArchivePage, error) {
	var page ArchivePage
	where, args, err := t.where(ctx, tx, owner, q)
	if err != nil {
		return page, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+t.table+` WHERE `+where, args...).
		Scan(&page.Count); err != nil {
		return page, err
	}
	pageWhere, pageArgs := where, append([]any(nil), args...)
	backward := q.Before != "" || q.Last
	for _, b := range []struct{ id, cond string }{{q.After, " AND seq > ?"}, {q.Before, " AND seq < ?"}} {
		if b.id == "" {
			continue
		}
		seq, err := t.seq(ctx, tx, owner, b.id)
		if err != nil {
			return page, err
		}
		pageWhere += b.cond
		pageArgs = append(pageArgs, seq)
	}
	limit := max(q.Max, 0)
	order, offset := "ASC", 0
	if backward {
		order = "DESC"
	} else if q.After == "" {
		offset = max(q.Index, 0)
	}
	// One row more than asked tells whether the page is the last one.
	rows, err := tx.QueryContext(ctx, `SELECT `+t.columns+` FROM `+t.table+` WHERE `+pageWhere+
		` ORDER BY seq `+order+` LIMIT ? OFFSET ?`, append(pageArgs, limit+1, offset)...)
	if err != nil {
		return page, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e  ArchiveEntry
			ms int64
		)
		if err := rows.Scan(&e.Seq, &e.ID, &e.With, &e.WithResource, &e.Outgoing, &ms, &e.Stanza); err != nil {
			return page, err
		}
		e.Stamp = fromMillis(ms)
		page.Entries = append(page.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return page, err
	}
	page.Complete = len(page.Entries) <= limit
	if !page.Complete {
		page.Entries = page.Entries[:limit]
	}
	if backward {
		for i, j := 0, len(page.Entries)-1; i < j; i, j = i+1, j-1 {
			page.Entries[i], page.Entries[j] = page.Entries[j], page.Entries[i]
		}
	}
	if len(page.Entries) == 0 {
		page.Entries = nil
		return page, nil
	}
	err = tx.QueryRowContext(ctx, `SELECT count(*) FROM `+t.table+` WHERE `+where+` AND seq < ?`,
		append(args, page.Entries[0].Seq)...).Scan(&page.FirstIndex)
	return page, err
}

// where builds the WHERE clause selecting q's result set (its filters, not
// its paging) in owner's archive. The stamp conditions use +stamp so SQLite
// walks the (owner, seq) or (owner, with, seq) index in archive order
// instead of sorting a stamp-index range.
func (t archiveTable) where(ctx context.Context, tx *sql.Tx, owner string, q ArchiveQuery) (string, []any, error) {
	conds := []string{t.owner + " = ?"}
	args := []any{owner}
	if q.With != "" && t.with != "" {
		conds = append(conds, t.with+" = ?")
		args = append(args, q.With)
	}
	if q.WithResource != "" && (q.With != "" || t.with == "") {
		conds = append(conds, t.resource+" = ?")
		args = append(args, q.WithResource)
	}
	if !q.Start.IsZero() {
		ms := millis(q.Start)
		if q.Start.After(fromMillis(ms)) {
			ms++ // round up: an entry at ms is before Start
		}
		conds = append(conds, "+stamp >= ?")
		args = append(args, ms)
	}
	if !q.End.IsZero() {
		ms := millis(q.End)
		if q.End.Before(fromMillis(ms)) {
			ms-- // before 1970, UnixMilli rounds toward zero
		}
		conds = append(conds, "+stamp <= ?")
		args = append(args, ms)
	}
	for _, b := range []struct{ id, cond string }{{q.AfterID, "seq > ?"}, {q.BeforeID, "seq < ?"}} {
		if b.id == "" {
			continue
		}
		seq, err := t.seq(ctx, tx, owner, b.id)
		if err != nil {
			return "", nil, err
		}
		conds = append(conds, b.cond)
		args = append(args, seq)
	}
	if len(q.IDs) > 0 {
		distinct := make(map[string]bool, len(q.IDs))
		idArgs := make([]any, 0, len(q.IDs))
		for _, id := range q.IDs {
			if !distinct[id] {
				distinct[id] = true
				idArgs = append(idArgs, id)
			}
		}
		in := "stanza_id IN (?" + strings.Repeat(", ?", len(idArgs)-1) + ")"
		var found int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+t.table+` WHERE `+t.owner+` = ? AND `+in,
			append([]any{owner}, idArgs...)...).Scan(&found); err != nil {
			return "", nil, err
		}
		if found != len(idArgs) {
			return "", nil, notFound("%d of %d archive ids in "+t.what, len(idArgs)-found, len(idArgs), owner)
		}
		conds = append(conds, in)
		args = append(args, idArgs...)
	}
	return strings.Join(conds, " AND "), args, nil
}

// seq returns the archive order of the entry id of owner's archive, or an
// ErrNotFound error.
func (t archiveTable) seq(ctx context.Context, tx *sql.Tx, owner, id string) (int64, error) {
	var seq int64
	err := tx.QueryRowContext(ctx, `SELECT seq FROM `+t.table+` WHERE `+t.owner+` = ? AND stanza_id = ?`,
		owner, id).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, notFound("archive id %q of "+t.what, id, owner)
	}
	return seq, err
}

// PruneArchive deletes the archived messages of every user whose Stamp is
// before cutoff, oldest first, for a retention policy (XEP-0313 §3.2). It
// deletes at most batch messages per transaction (batch <= 0 means
// [DefaultArchiveBatch]) so that other writers are not held up for long,
// and stops between transactions when ctx ends, returning ctx's error with
// the number deleted so far. It returns the number of messages deleted.
func (s *Store) PruneArchive(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	return s.deleteArchiveBatches(ctx, "prune archives",
		`DELETE FROM mam_messages WHERE seq IN
			(SELECT seq FROM mam_messages WHERE stamp < ? ORDER BY stamp LIMIT ?)`,
		millis(cutoff), batch)
}

// DeleteArchive deletes every archived message of username (not the
// preferences), in transactions of at most batch messages (batch <= 0
// means [DefaultArchiveBatch]), oldest first; messages appended meanwhile
// are deleted too. It returns the number deleted. It is not an error if
// there is no such account. Deleting the account deletes its archive and
// preferences anyway.
func (s *Store) DeleteArchive(ctx context.Context, username string, batch int) (int64, error) {
	return s.deleteArchiveBatches(ctx, fmt.Sprintf("delete archive of %q", username),
		`DELETE FROM mam_messages WHERE seq IN
			(SELECT seq FROM mam_messages WHERE username = ? ORDER BY seq LIMIT ?)`,
		username, batch)
}

// deleteArchiveBatches runs stmt, which takes arg and a LIMIT, in separate
// transactions until it deletes fewer than batch rows.
func (s *Store) deleteArchiveBatches(ctx context.Context, op, stmt string, arg any, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultArchiveBatch
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, wrap(op, err)
		}
		var n int64
		err := s.write(ctx, op, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, stmt, arg, batch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// ArchivePrefs are a user's archiving preferences (XEP-0441 §2.1).
type ArchivePrefs struct {
	// Default is "always", "never" or "roster" (XEP-0441 §2.1.1); "" when
	// the user never set preferences (the caller applies its default).
	Default string
	// Always and Never are the JIDs (bare or full, as given) whose messages
	// are always or never archived (XEP-0441 §2.1.2, §2.1.3), in the order
	// given to SetArchivePrefs, duplicates dropped; nil if none.
	Always, Never []string
}

// ArchivePrefs returns username's archiving preferences (XEP-0441 §2.1),
// with Default "" if never set. Returns an error matching [ErrNotFound] if
// there is no such account.
//
// Preferences are cached in memory after the first read (see prefsCache):
// this Store's SetArchivePrefs and DeleteAccount keep the cache right;
// changes by another process are not seen.
func (s *Store) ArchivePrefs(ctx context.Context, username string) (ArchivePrefs, error) {
	if p, ok := s.prefs.get(username); ok {
		return p, nil
	}
	gen := s.prefs.generation()
	var p ArchivePrefs
	err := s.read(ctx, fmt.Sprintf("archive preferences of %q", username), func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT default_mode FROM mam_prefs WHERE username = ?`, username).Scan(&p.Default)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT list, jid FROM mam_prefs_jids WHERE username = ? ORDER BY list, pos`, username)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var list, j string
			if err := rows.Scan(&list, &j); err != nil {
				return err
			}
			if list == "always" {
				p.Always = append(p.Always, j)
			} else {
				p.Never = append(p.Never, j)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return ArchivePrefs{}, err
	}
	s.prefs.put(username, p, gen)
	return p, nil
}

// SetArchivePrefs replaces username's archiving preferences with p
// (XEP-0441 §2.1). A JID may be in both lists; the caller decides which
// wins. Returns an error matching [ErrNotFound] if there is no such
// account, or a plain error if p.Default is not "always", "never" or
// "roster" or a JID is "". The store enforces no list size limit.
func (s *Store) SetArchivePrefs(ctx context.Context, username string, p ArchivePrefs) error {
	op := fmt.Sprintf("set archive preferences of %q", username)
	switch p.Default {
	case "always", "never", "roster":
	default:
		return wrap(op, fmt.Errorf("invalid default %q", p.Default))
	}
	for _, j := range append(append([]string(nil), p.Always...), p.Never...) {
		if j == "" {
			return wrap(op, errors.New("empty JID"))
		}
	}
	// Forgotten after the commit, or the failure (see prefsCache).
	defer s.prefs.forget(username)
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO mam_prefs (username, default_mode) VALUES (?, ?)
			ON CONFLICT (username) DO UPDATE SET default_mode = excluded.default_mode`, username, p.Default); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM mam_prefs_jids WHERE username = ?`, username); err != nil {
			return err
		}
		for _, l := range []struct {
			name string
			jids []string
		}{{"always", p.Always}, {"never", p.Never}} {
			for pos, j := range l.jids {
				if _, err := tx.ExecContext(ctx, `INSERT INTO mam_prefs_jids (username, list, jid, pos)
					VALUES (?, ?, ?, ?) ON CONFLICT (username, list, jid) DO NOTHING`,
					username, l.name, j, pos); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
