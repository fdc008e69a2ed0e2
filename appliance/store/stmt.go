package store

import (
	"context"
	"database/sql"
	"errors"
)

// writerStmts are the statements of the hottest write paths, prepared once
// on the writer connection when the Store opens. Inside a write
// transaction, tx.StmtContext reuses the statement already prepared on that
// connection instead of compiling its SQL again: compiling (sqlite3_prepare)
// the archive INSERT and the group commit's SAVEPOINT and RELEASE was about
// a fifth of the server's CPU under 1:1 message load. database/sql prepares
// them again by itself if the writer connection is ever replaced.
type writerStmts struct {
	appendArchive *sql.Stmt // INSERT INTO mam_messages (AppendArchive)
	savepoint     *sql.Stmt // SAVEPOINT (commitBatch)
	release       *sql.Stmt // RELEASE (commitBatch)
	rollbackTo    *sql.Stmt // ROLLBACK TO (commitBatch)
}

// prepareWriter prepares s.ws on the writer connection. It runs in Open
// after the migrations (the statements need their tables) and before any
// write: with one writer connection, preparing on s.w waits for it to be
// free, so it must never run inside a write transaction.
func (s *Store) prepareWriter(ctx context.Context) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.ws.appendArchive, `INSERT INTO mam_messages
			(username, stanza_id, with_jid, with_resource, outgoing, stamp, stanza) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (username, stanza_id) DO NOTHING RETURNING seq`},
		{&s.ws.savepoint, "SAVEPOINT " + savepoint},
		{&s.ws.release, "RELEASE " + savepoint},
		{&s.ws.rollbackTo, "ROLLBACK TO " + savepoint},
	} {
		st, err := s.w.PrepareContext(ctx, p.query)
		if err != nil {
			return err
		}
		*p.stmt = st
	}
	return nil
}

// closeWriter closes the statements of s.ws that were prepared.
func (s *Store) closeWriter() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.ws.appendArchive, s.ws.savepoint, s.ws.release, s.ws.rollbackTo} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// execTx runs the prepared statement st inside tx with no arguments.
func execTx(ctx context.Context, tx *sql.Tx, st *sql.Stmt) error {
	_, err := tx.StmtContext(ctx, st).ExecContext(ctx)
	return err
}
