package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// schemaFAST is the XEP-0484 FAST token migration: at most two token slots
// ('current' and 'new', XEP-0484 §5.1) per (account, SASL2 user-agent id,
// HT mechanism). Only the token's SHA-256 digest is kept. Any change of the
// account's SCRAM credentials (Store.SetCredentials, i.e. a password change)
// drops all of the account's tokens in the same transaction, by trigger.
const schemaFAST = `
CREATE TABLE fast_tokens (
	username  TEXT    NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	agent     TEXT    NOT NULL,                 -- XEP-0388 <user-agent id/>
	mechanism TEXT    NOT NULL,                 -- HT-* mechanism the token is bound to
	slot      TEXT    NOT NULL CHECK (slot IN ('current', 'new')),
	key_hash  BLOB    NOT NULL,                 -- SHA-256 of the token, never the token
	expires   INTEGER NOT NULL,                 -- unix ms
	counter   INTEGER,                          -- highest XEP-0484 'count' accepted, NULL = none yet
	created   INTEGER NOT NULL,                 -- unix ms
	PRIMARY KEY (username, agent, mechanism, slot)
) STRICT;

CREATE TRIGGER fast_tokens_credentials_changed AFTER DELETE ON scram_keys
BEGIN
	DELETE FROM fast_tokens WHERE username = OLD.username;
END;
`

// FASTSlot names one of the two token slots of a client (XEP-0484 §5.1).
type FASTSlot string

// The token slots. A newly issued token goes to FASTSlotNew; the first
// successful use moves it to FASTSlotCurrent, replacing the token there.
const (
	FASTSlotCurrent FASTSlot = "current"
	FASTSlotNew     FASTSlot = "new"
)

// ErrFASTReplay reports that a XEP-0484 'count' was not greater than the
// highest count already accepted for that token (XEP-0484 §3.4).
var ErrFASTReplay = errors.New("store: FAST token count replayed")

// FASTToken is one stored XEP-0484 token of an account.
type FASTToken struct {
	// Agent is the client's SASL2 <user-agent id/> (XEP-0388 §2.3).
	Agent string
	// Mechanism is the HT mechanism the token is bound to, e.g.
	// "HT-SHA-256-NONE" (XEP-0484 §3.4).
	Mechanism string
	// Slot is where the token is kept; ignored by [Store.PutFASTToken],
	// which always fills [FASTSlotNew].
	Slot FASTSlot
	// Key is the SHA-256 digest of the token (32 bytes; see auth.TokenKey),
	// never the token itself.
	Key []byte
	// Expires is when the token stops being valid (UTC, millisecond
	// precision).
	Expires time.Time
	// Counter is the highest 'count' accepted for the token, -1 if none
	// yet; ignored by [Store.PutFASTToken].
	Counter int64
	// Created is when the token was issued; ignored by
	// [Store.PutFASTToken], which uses the store clock.
	Created time.Time
}

// PutFASTToken stores a newly issued token t for username in the 'new'
// slot of (t.Agent, t.Mechanism), replacing any token there that was never
// used (XEP-0484 §3.5: previously generated, unused tokens are
// invalidated); the 'current' slot is left alone so that a client that
// never receives the new token can still log in with the old one. It also
// deletes username's expired tokens and, if max > 0, the tokens expiring
// soonest beyond max for the account (a bound against clients that invent
// a new user-agent id on every login). Returns an error matching
// [ErrNotFound] if there is no such account, or a plain error for an empty
// Agent or Mechanism or a Key that is not 32 bytes.
func (s *Store) PutFASTToken(ctx context.Context, username string, t FASTToken, max int) error {
	op := fmt.Sprintf("put FAST token of %q", username)
	switch {
	case t.Agent == "" || t.Mechanism == "":
		return wrap(op, errors.New("empty agent or mechanism"))
	case len(t.Key) != 32:
		return wrap(op, fmt.Errorf("key is %d bytes, want 32", len(t.Key)))
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		if err := requireAccount(ctx, tx, username); err != nil {
			return err
		}
		now := millis(s.now())
		if _, err := tx.ExecContext(ctx, `DELETE FROM fast_tokens WHERE username = ? AND expires <= ?`, username, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO fast_tokens
			(username, agent, mechanism, slot, key_hash, expires, counter, created) VALUES (?, ?, ?, 'new', ?, ?, NULL, ?)
			ON CONFLICT (username, agent, mechanism, slot) DO UPDATE SET
				key_hash = excluded.key_hash, expires = excluded.expires, counter = NULL, created = excluded.created`,
			username, t.Agent, t.Mechanism, t.Key, millis(t.Expires), now); err != nil {
			return err
		}
		if max > 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM fast_tokens WHERE username = ? AND rowid NOT IN (
				SELECT rowid FROM fast_tokens WHERE username = ? ORDER BY expires DESC, created DESC LIMIT ?)`,
				username, username, max)
			return err
		}
		return nil
	})
}

// FASTTokens returns username's tokens for (agent, mechanism), the 'new'
// slot first, expired ones included (the caller decides, so that it can
// tell an expired token from a wrong one). An unknown account or client
// has no tokens: the result is then empty, not an error.
func (s *Store) FASTTokens(ctx context.Context, username, agent, mechanism string) ([]FASTToken, error) {
	op := fmt.Sprintf("FAST tokens of %q", username)
	rows, err := s.r.QueryContext(ctx, `SELECT slot, key_hash, expires, counter, created FROM fast_tokens
		WHERE username = ? AND agent = ? AND mechanism = ? ORDER BY slot = 'new' DESC`, username, agent, mechanism)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []FASTToken
	for rows.Next() {
		var (
			t                FASTToken
			slot             string
			expires, created int64
			counter          sql.Null[int64]
		)
		if err := rows.Scan(&slot, &t.Key, &expires, &counter, &created); err != nil {
			return nil, wrap(op, err)
		}
		t.Agent, t.Mechanism, t.Slot = agent, mechanism, FASTSlot(slot)
		t.Expires, t.Created = fromMillis(expires), fromMillis(created)
		t.Counter = -1
		if counter.Valid {
			t.Counter = counter.V
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// UseFASTToken records a successful authentication with token t (as
// returned by [Store.FASTTokens]) in one transaction: the token must still
// be in t.Slot with key t.Key; if count >= 0 (the XEP-0484 'count'
// attribute was sent) it must be greater than the highest count accepted
// so far and becomes the new highest, else the error matches
// [ErrFASTReplay]; and a token used from the 'new' slot moves to 'current',
// replacing the older token there (XEP-0484 §3.5: using a token invalidates
// the client's tokens that expire earlier). Returns an error matching
// [ErrNotFound] if the token is no longer stored (invalidated or replaced
// concurrently).
func (s *Store) UseFASTToken(ctx context.Context, username string, t FASTToken, count int64) error {
	return s.write(ctx, fmt.Sprintf("use FAST token of %q", username), func(tx *sql.Tx) error {
		var (
			key     []byte
			counter sql.Null[int64]
		)
		err := tx.QueryRowContext(ctx, `SELECT key_hash, counter FROM fast_tokens
			WHERE username = ? AND agent = ? AND mechanism = ? AND slot = ?`,
			username, t.Agent, t.Mechanism, string(t.Slot)).Scan(&key, &counter)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare(key, t.Key) != 1) {
			return notFound("FAST token of %q for %q", username, t.Mechanism)
		}
		if err != nil {
			return err
		}
		if count >= 0 {
			if counter.Valid && count <= counter.V {
				return fmt.Errorf("%w: count %d, already accepted %d", ErrFASTReplay, count, counter.V)
			}
			counter = sql.Null[int64]{V: count, Valid: true}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE fast_tokens SET counter = ?
			WHERE username = ? AND agent = ? AND mechanism = ? AND slot = ?`,
			counter, username, t.Agent, t.Mechanism, string(t.Slot)); err != nil {
			return err
		}
		if t.Slot != FASTSlotNew {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM fast_tokens
			WHERE username = ? AND agent = ? AND mechanism = ? AND slot = 'current'`,
			username, t.Agent, t.Mechanism); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE fast_tokens SET slot = 'current'
			WHERE username = ? AND agent = ? AND mechanism = ? AND slot = 'new'`,
			username, t.Agent, t.Mechanism)
		return err
	})
}

// DeleteFASTAgentTokens deletes every token of username's client agent, of
// any mechanism (XEP-0484 §3.6 invalidation, e.g. a client logging out).
// It is idempotent: nothing to delete, or no such account, is not an error.
func (s *Store) DeleteFASTAgentTokens(ctx context.Context, username, agent string) error {
	return s.write(ctx, fmt.Sprintf("delete FAST tokens of %q agent", username), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM fast_tokens WHERE username = ? AND agent = ?`, username, agent)
		return err
	})
}

// DeleteFASTTokens deletes all of username's XEP-0484 tokens, so that every
// client has to authenticate with the password again. Call it when the
// password changes or the user wants all devices signed out. (Replacing the
// SCRAM credentials with [Store.SetCredentials] already does this in the
// same transaction.) It is idempotent: no tokens, or no such account, is
// not an error.
func (s *Store) DeleteFASTTokens(ctx context.Context, username string) error {
	return s.write(ctx, fmt.Sprintf("delete FAST tokens of %q", username), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM fast_tokens WHERE username = ?`, username)
		return err
	})
}
