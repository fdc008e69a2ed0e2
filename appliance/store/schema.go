package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations is the ordered schema history. Migration i (0-based) is schema
// version i+1 in schema_migrations. Each runs in its own write transaction
// together with the insertion of its version row, so it is applied exactly
// once even if several processes open the database at the same moment.
//
// To change the schema, APPEND a new entry; never edit or reorder existing
// ones (databases in the field have already applied them). Migrations run
// with foreign_keys=ON inside a transaction, where that pragma cannot be
// changed: a table rebuild must keep referential integrity at every step.
//
// All tables are STRICT. Timestamps are UTC unix milliseconds (INTEGER).
var migrations = []string{
	// 1: initial schema.
	`
CREATE TABLE accounts (
	username    TEXT    NOT NULL PRIMARY KEY,   -- XMPP localpart
	created     INTEGER NOT NULL,               -- unix ms
	last_logout INTEGER,                        -- unix ms, NULL = never (XEP-0012)
	last_status TEXT    NOT NULL DEFAULT '',    -- XEP-0012 status text
	roster_ver  INTEGER NOT NULL DEFAULT 0      -- XEP-0237 roster version
) STRICT;

-- SCRAM salted credentials (RFC 5802 §3); never a password.
CREATE TABLE scram_keys (
	username   TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	hash       TEXT    NOT NULL CHECK (hash IN ('SHA-1', 'SHA-256', 'SHA-512')),
	salt       BLOB    NOT NULL,
	iterations INTEGER NOT NULL CHECK (iterations > 0),
	stored_key BLOB    NOT NULL,
	server_key BLOB    NOT NULL,
	PRIMARY KEY (username, hash)
) STRICT;

-- Store-wide roster version counter: every roster change of any user takes
-- the next value, so a user's version only ever increases, even across
-- deletion and re-creation of the account.
CREATE TABLE roster_seq (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	value INTEGER NOT NULL
) STRICT;
INSERT INTO roster_seq (id, value) VALUES (1, 0);

-- RFC 6121 §2.1.2 roster items.
CREATE TABLE roster_items (
	username     TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	jid          TEXT    NOT NULL,              -- bare JID
	name         TEXT    NOT NULL DEFAULT '',
	subscription TEXT    NOT NULL DEFAULT 'none' CHECK (subscription IN ('none', 'to', 'from', 'both')),
	ask          INTEGER NOT NULL DEFAULT 0 CHECK (ask IN (0, 1)),      -- ask='subscribe'
	approved     INTEGER NOT NULL DEFAULT 0 CHECK (approved IN (0, 1)), -- RFC 6121 §3.4 pre-approval
	PRIMARY KEY (username, jid)
) STRICT;

CREATE TABLE roster_groups (
	username TEXT    NOT NULL,
	jid      TEXT    NOT NULL,
	pos      INTEGER NOT NULL,                  -- order as given by the client
	name     TEXT    NOT NULL,
	PRIMARY KEY (username, jid, pos),
	UNIQUE (username, jid, name),
	FOREIGN KEY (username, jid) REFERENCES roster_items(username, jid) ON DELETE CASCADE
) STRICT;

-- RFC 6121 §3.1.3 inbound subscription requests awaiting the user's answer.
CREATE TABLE subscription_requests (
	username TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	contact  TEXT    NOT NULL,                  -- bare JID
	stanza   BLOB    NOT NULL,                  -- serialized <presence type='subscribe'/>
	received INTEGER NOT NULL,                  -- unix ms
	PRIMARY KEY (username, contact)
) STRICT;

-- XEP-0160 offline messages. AUTOINCREMENT: ids are never reused, so
-- "delete up to id" cannot hit a message stored later.
CREATE TABLE offline_messages (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	username TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	stanza   BLOB    NOT NULL,
	stored   INTEGER NOT NULL                   -- unix ms
) STRICT;
CREATE INDEX offline_messages_by_user ON offline_messages (username, id);

-- XEP-0054 vcard-temp: the serialized <vCard xmlns='vcard-temp'/> element.
CREATE TABLE vcards (
	username TEXT NOT NULL PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
	data     BLOB NOT NULL
) STRICT;

-- XEP-0049 private XML storage: one serialized element per namespace.
CREATE TABLE private_xml (
	username  TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	namespace TEXT NOT NULL,
	data      BLOB NOT NULL,
	PRIMARY KEY (username, namespace)
) STRICT;
`,
	// 2: server-wide settings (the served domain, later web UI settings).
	`
CREATE TABLE settings (
	key   TEXT NOT NULL PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;
`,
	// 3: XEP-0313 message archive (mam.go).
	schemaMAM,
	// 4: XEP-0060/XEP-0163 personal eventing nodes and items (pubsub.go).
	schemaPubSub,
	// 5: XEP-0191 block lists (blocking.go).
	schemaBlocking,
	// 6: XEP-0357 push registrations (push.go).
	schemaPush,
	// 7: XEP-0484 FAST tokens (fast.go).
	schemaFAST,
	// 8: XEP-0363 upload slots and files (upload.go).
	schemaUpload,
	// 9: XEP-0045 multi-user chat rooms, affiliations and room archives (muc.go).
	schemaMUC,
	// 10: account roles, invitations (XEP-0401/XEP-0445) and circles (invite.go).
	schemaInvites,
	// 11: account deletions with a grace period, password reset links (accountadmin.go).
	schemaAccountAdmin,
	// 12: the web interface's login sessions (websession.go).
	schemaWebSessions,
	// 13: the group chat room of a circle (circle.go).
	schemaCircleRooms,
}

// migrate creates schema_migrations if needed and applies every migration
// not yet recorded there, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at INTEGER NOT NULL -- unix ms
) STRICT`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var latest sql.Null[int64]
	if err := s.w.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&latest); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if latest.V > int64(len(migrations)) {
		return fmt.Errorf("migrate: database schema version %d is newer than this binary supports (%d)", latest.V, len(migrations))
	}
	for i := int(latest.V); i < len(migrations); i++ {
		if err := s.applyMigration(ctx, i+1, migrations[i]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
	}
	return nil
}

// applyMigration runs migration m as schema version in one write
// transaction, unless that version is already recorded.
func (s *Store) applyMigration(ctx context.Context, version int, m string) error {
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // no-op after Commit
	// Re-check under the write lock: another process may have applied it
	// since we looked.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		version, millis(s.now())); err != nil {
		return err
	}
	return tx.Commit()
}
