package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// schemaMUC is the migration creating the tables of XEP-0045 multi-user chat
// rooms: the room itself (configuration, subject, vCard), its affiliation
// lists and its XEP-0313 archive.
//
// A room is named by its localpart (the node of room@groups.example.org);
// the service domain is configuration, so renaming it keeps the rooms. The
// configuration is a JSON document owned by the MUC module (the store does
// not interpret it). muc_messages.seq is the archive order, like
// mam_messages.seq.
const schemaMUC = `
CREATE TABLE muc_rooms (
	room          TEXT    NOT NULL PRIMARY KEY,    -- localpart of the room JID
	config        TEXT    NOT NULL,                -- JSON, owned by the MUC module
	subject       TEXT    NOT NULL DEFAULT '',     -- XEP-0045 §8.1 subject
	subject_nick  TEXT    NOT NULL DEFAULT '',     -- who set it ('' for the room)
	subject_stamp INTEGER NOT NULL DEFAULT 0,      -- unix ms, 0 = never set
	vcard         BLOB    NOT NULL DEFAULT x'',    -- XEP-0054 vCard of the room, '' = none
	created       INTEGER NOT NULL                 -- unix ms
) STRICT;

-- XEP-0045 §5.2 affiliations other than 'none', by real bare JID.
CREATE TABLE muc_affiliations (
	room        TEXT NOT NULL REFERENCES muc_rooms(room) ON DELETE CASCADE,
	jid         TEXT NOT NULL,                     -- bare JID (or a domain)
	affiliation TEXT NOT NULL CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
	reason      TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (room, jid)
) STRICT;

-- XEP-0313 room archives.
CREATE TABLE muc_messages (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	room      TEXT    NOT NULL REFERENCES muc_rooms(room) ON DELETE CASCADE,
	stanza_id TEXT    NOT NULL,                    -- XEP-0359 stanza-id, unique in the room
	nick      TEXT    NOT NULL,                    -- the sender's room nickname
	real_jid  TEXT    NOT NULL DEFAULT '',         -- the sender's real bare JID
	stamp     INTEGER NOT NULL,                    -- unix ms
	stanza    BLOB    NOT NULL,                    -- serialized <message/> as broadcast
	UNIQUE (room, stanza_id)
) STRICT;
CREATE INDEX muc_messages_by_room  ON muc_messages (room, seq);
CREATE INDEX muc_messages_by_nick  ON muc_messages (room, nick, seq);
CREATE INDEX muc_messages_by_stamp ON muc_messages (stamp);
`

// MUCRoom is one stored XEP-0045 room.
type MUCRoom struct {
	// Name is the room JID's localpart, as normalised by the caller.
	Name string
	// Config is the room configuration, opaque to the store (the MUC
	// module's JSON). Must not be empty.
	Config []byte
	// Subject is the room subject (XEP-0045 §8.1), SubjectNick the nickname
	// of the occupant who set it ("" for none) and SubjectStamp when (zero
	// if never set).
	Subject, SubjectNick string
	SubjectStamp         time.Time
	// VCard is the room's serialized vcard-temp element (XEP-0054), nil if
	// none.
	VCard []byte
	// Created is when the room was first saved; set by [Store.SaveMUCRoom]
	// on insertion, kept afterwards.
	Created time.Time
}

// MUCAffiliation is one entry of a room's affiliation lists (XEP-0045 §5.2).
type MUCAffiliation struct {
	// JID is the affiliated bare JID (or domain), as normalised by the
	// caller.
	JID string
	// Affiliation is "owner", "admin", "member" or "outcast".
	Affiliation string
	// Reason is the reason given when it was set ("" for none).
	Reason string
}

// MUCRooms returns every stored room, sorted by name; nil if none.
func (s *Store) MUCRooms(ctx context.Context) ([]MUCRoom, error) {
	var out []MUCRoom
	err := s.read(ctx, "list MUC rooms", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT room, config, subject, subject_nick, subject_stamp, vcard, created
			FROM muc_rooms ORDER BY room`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r             MUCRoom
				config        string
				subj, created int64
			)
			if err := rows.Scan(&r.Name, &config, &r.Subject, &r.SubjectNick, &subj, &r.VCard, &created); err != nil {
				return err
			}
			r.Config = []byte(config)
			if subj != 0 {
				r.SubjectStamp = fromMillis(subj)
			}
			if len(r.VCard) == 0 {
				r.VCard = nil
			}
			r.Created = fromMillis(created)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SaveMUCRoom inserts room r or replaces its configuration, subject and
// vCard (not its affiliations or archive), and returns it as stored
// (Created set). Returns a plain error if r.Name or r.Config is empty.
func (s *Store) SaveMUCRoom(ctx context.Context, r MUCRoom) (MUCRoom, error) {
	op := fmt.Sprintf("save MUC room %q", r.Name)
	if r.Name == "" || len(r.Config) == 0 {
		return MUCRoom{}, wrap(op, errors.New("empty name or configuration"))
	}
	var subj int64
	if !r.SubjectStamp.IsZero() {
		subj = millis(r.SubjectStamp)
	}
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `INSERT INTO muc_rooms (room, config, subject, subject_nick, subject_stamp, vcard, created)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (room) DO UPDATE SET config = excluded.config, subject = excluded.subject,
				subject_nick = excluded.subject_nick, subject_stamp = excluded.subject_stamp, vcard = excluded.vcard
			RETURNING created`,
			r.Name, string(r.Config), r.Subject, r.SubjectNick, subj, nonNil(r.VCard), millis(s.now())).Scan(&created)
		r.Created = fromMillis(created)
		return err
	})
	if err != nil {
		return MUCRoom{}, err
	}
	if !r.SubjectStamp.IsZero() {
		r.SubjectStamp = fromMillis(subj)
	}
	return r, nil
}

// DeleteMUCRoom deletes room with its affiliations and archive. It is not
// an error if there is no such room.
func (s *Store) DeleteMUCRoom(ctx context.Context, room string) error {
	return s.write(ctx, fmt.Sprintf("delete MUC room %q", room), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM muc_rooms WHERE room = ?`, room)
		return err
	})
}

// MUCAffiliations returns room's affiliation lists (XEP-0045 §5.2), sorted
// by JID; nil if none. Returns an error matching [ErrNotFound] if there is
// no such room.
func (s *Store) MUCAffiliations(ctx context.Context, room string) ([]MUCAffiliation, error) {
	var out []MUCAffiliation
	err := s.read(ctx, fmt.Sprintf("affiliations of MUC room %q", room), func(tx *sql.Tx) error {
		if err := requireMUCRoom(ctx, tx, room); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT jid, affiliation, reason FROM muc_affiliations WHERE room = ? ORDER BY jid`, room)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a MUCAffiliation
			if err := rows.Scan(&a.JID, &a.Affiliation, &a.Reason); err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetMUCAffiliations applies changes to room's affiliation lists in one
// transaction: an entry with Affiliation "" or "none" removes that JID's
// affiliation, any other replaces it. Returns an error matching
// [ErrNotFound] if there is no such room, or a plain error for an unknown
// affiliation or an empty JID (nothing is changed then).
func (s *Store) SetMUCAffiliations(ctx context.Context, room string, changes []MUCAffiliation) error {
	op := fmt.Sprintf("set affiliations of MUC room %q", room)
	for _, c := range changes {
		switch c.Affiliation {
		case "", "none", "owner", "admin", "member", "outcast":
		default:
			return wrap(op, fmt.Errorf("unknown affiliation %q", c.Affiliation))
		}
		if c.JID == "" {
			return wrap(op, errors.New("empty JID"))
		}
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireMUCRoom(ctx, tx, room); err != nil {
			return err
		}
		for _, c := range changes {
			var err error
			if c.Affiliation == "" || c.Affiliation == "none" {
				_, err = tx.ExecContext(ctx, `DELETE FROM muc_affiliations WHERE room = ? AND jid = ?`, room, c.JID)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO muc_affiliations (room, jid, affiliation, reason) VALUES (?, ?, ?, ?)
					ON CONFLICT (room, jid) DO UPDATE SET affiliation = excluded.affiliation, reason = excluded.reason`,
					room, c.JID, c.Affiliation, c.Reason)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// requireMUCRoom returns an ErrNotFound error if room is not stored.
func requireMUCRoom(ctx context.Context, q queryer, room string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM muc_rooms WHERE room = ?`, room).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("MUC room %q", room)
	}
	return err
}

// AppendMUCArchive adds e as the newest entry of room's archive (XEP-0313
// on a room JID) and returns it as stored (Seq set, ID generated when "",
// Stamp truncated to the millisecond in UTC). In a room archive
// e.WithResource is the sender's nickname and e.With the sender's real bare
// JID ("" if unknown); Outgoing is ignored. The entry is durable when it
// returns. Returns an error matching [ErrNotFound] if there is no such room
// or [ErrExists] if e.ID is already in its archive.
func (s *Store) AppendMUCArchive(ctx context.Context, room string, e ArchiveEntry) (ArchiveEntry, error) {
	op := fmt.Sprintf("append to archive of MUC room %q", room)
	if e.ID == "" {
		id, err := newArchiveID()
		if err != nil {
			return ArchiveEntry{}, wrap(op, err)
		}
		e.ID = id
	}
	e.Stamp = fromMillis(millis(e.Stamp))
	e.Stanza = nonNil(e.Stanza)
	e.Outgoing = false
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireMUCRoom(ctx, tx, room); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO muc_messages (room, stanza_id, nick, real_jid, stamp, stanza)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room, stanza_id) DO NOTHING RETURNING seq`,
			room, e.ID, e.WithResource, e.With, millis(e.Stamp), e.Stanza).Scan(&e.Seq)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: archive id %q of MUC room %q", ErrExists, e.ID, room)
		}
		return err
	})
	if err != nil {
		return ArchiveEntry{}, err
	}
	return e, nil
}

// QueryMUCArchive returns one page of room's archive selected by q, with
// the semantics of [Store.QueryArchive] except for the 'with' filter: in a
// room archive q.With is ignored (the caller checks it names the room) and
// q.WithResource, if not "", keeps the messages sent under that nickname
// (XEP-0313 §4.1.1 on an occupant JID). Entries have With set to the
// sender's real bare JID and WithResource to its nickname. Returns an error
// matching [ErrNotFound] if there is no such room, or if After, Before,
// AfterID, BeforeID or one of IDs names no entry of that archive.
func (s *Store) QueryMUCArchive(ctx context.Context, room string, q ArchiveQuery) (ArchivePage, error) {
	var page ArchivePage
	err := s.read(ctx, fmt.Sprintf("query archive of MUC room %q", room), func(tx *sql.Tx) error {
		if err := requireMUCRoom(ctx, tx, room); err != nil {
			return err
		}
		var err error
		page, err = roomArchive.page(ctx, tx, room, q)
		return err
	})
	if err != nil {
		return ArchivePage{}, err
	}
	return page, nil
}

// PruneMUCArchive deletes the archived messages of every room whose Stamp
// is before cutoff, in transactions of at most batch messages (batch <= 0
// means [DefaultArchiveBatch]), like [Store.PruneArchive], and returns the
// number deleted.
func (s *Store) PruneMUCArchive(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	return s.deleteArchiveBatches(ctx, "prune MUC archives",
		`DELETE FROM muc_messages WHERE seq IN
			(SELECT seq FROM muc_messages WHERE stamp < ? ORDER BY stamp LIMIT ?)`,
		millis(cutoff), batch)
}
