// Package store owns all of Hearth's persistent state and is the only
// package that speaks SQL. The backing store is a single SQLite database
// file (via github.com/mattn/go-sqlite3) in WAL mode with synchronous=FULL,
// so every method that returns nil has made its change durable: it survives
// kill -9 of the process and power loss. Concurrent writes share
// transactions (group commit, one fsync for many; see batch.go), each in a
// savepoint of its own, so that one write's failure undoes only its own
// changes.
//
// Several processes may open the same file at once (the server plus the
// "hearth user add" CLI); write transactions take SQLite's write lock up
// front (BEGIN IMMEDIATE) and wait up to [BusyTimeout] for it.
//
// Conventions shared by every method:
//   - usernames are XMPP localparts already normalised by the caller
//     (PRECIS UsernameCaseMapped, RFC 8265); contacts are bare JID strings
//     (RFC 7622) also normalised by the caller. The store compares them
//     byte-for-byte.
//   - timestamps are stored as UTC unix milliseconds; times passed in are
//     truncated to the millisecond and times returned are in UTC.
//   - a per-user method on a username with no account returns an error
//     matching [ErrNotFound] (use errors.Is), except the idempotent deletes
//     [Store.DeleteSubscriptionRequest] and [Store.DeleteOffline].
//   - other errors are wrapped with context ("store: <operation>: ...").
//
// The store is policy-free: quotas, size limits and authorisation are the
// caller's business (the only limit it enforces is the one passed to
// [Store.PushOffline]).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3" // registers the "sqlite3" database/sql driver
)

// BusyTimeout is how long an operation waits for another connection or
// process (e.g. the CLI while the server runs) to release SQLite's write
// lock before failing with SQLITE_BUSY. It is the SQLite busy_timeout.
const BusyTimeout = 5 * time.Second

// readConns is the size of the read-only connection pool. Writes use a
// single dedicated connection.
const readConns = 4

// Sentinel errors. Returned errors wrap them with detail; test with
// errors.Is.
var (
	// ErrNotFound reports that the account, or the requested item of it,
	// does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists reports that an account of that username already exists.
	ErrExists = errors.New("store: already exists")
	// ErrQuotaExceeded reports that a per-user limit passed by the caller
	// (e.g. the offline message limit of [Store.PushOffline]) is reached.
	ErrQuotaExceeded = errors.New("store: quota exceeded")
)

// Store is a handle on one Hearth database file. It is safe for concurrent
// use by multiple goroutines, and several Stores (in one or more processes)
// may have the same file open at once. Create with [Open]; release with
// [Store.Close].
type Store struct {
	w     *sql.DB      // exactly one connection, BEGIN IMMEDIATE: all writes
	r     *sql.DB      // query_only pool, BEGIN DEFERRED: reads
	wq    writeQueue   // group commit of writes on w (batch.go)
	acct  accountCache // accounts known to exist (cache.go)
	prefs prefsCache   // archiving preferences (prefscache.go)
	ws    writerStmts  // statements prepared on w (stmt.go)
	now   func() time.Time
}

// Open opens (creating if needed, along with its parent directory, mode
// 0700) the SQLite database at path and applies any pending schema
// migrations. path is a filesystem path, not a DSN; ":memory:" is not
// supported. Connections use journal_mode=WAL, synchronous=FULL,
// foreign_keys=ON and busy_timeout=[BusyTimeout]. Open fails if the
// database was migrated by a newer Hearth (it has schema versions this
// binary does not know).
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %s: create directory: %w", path, err)
	}
	busy := fmt.Sprint(BusyTimeout.Milliseconds())
	// The writer sets WAL first (journal_mode is persistent in the file), so
	// the readers need not, and query_only readers could not.
	w := sql.OpenDB(writerConnector{d: &sqlite3.SQLiteDriver{}, dsn: dsn(abs, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"}, // after _journal_mode: the driver would otherwise pick NORMAL for WAL
		"_foreign_keys": {"on"},
		"_busy_timeout": {busy},
		"_txlock":       {"immediate"},
	})})
	// One writer connection: in-process writers queue in database/sql
	// instead of contending for SQLite's lock; other processes are handled
	// by busy_timeout + BEGIN IMMEDIATE.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	s := &Store{w: w, now: time.Now}
	s.wq.init()
	ctx := context.Background()
	// The first connection switches the file to WAL, which needs an exclusive
	// lock, and SQLite does not run the busy handler for that switch: when
	// another process opens the same new file at that moment it reports
	// "database is locked" at once. Retry within BusyTimeout.
	var mode string
	for deadline := time.Now().Add(BusyTimeout); ; {
		err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
		if err == nil {
			break
		}
		var se sqlite3.Error
		if !errors.As(err, &se) || (se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked) || time.Now().After(deadline) {
			w.Close()
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mode != "wal" {
		w.Close()
		return nil, fmt.Errorf("store: open %s: journal_mode is %q, want wal", path, mode)
	}
	r, err := sql.Open("sqlite3", dsn(abs, url.Values{
		"_synchronous":  {"FULL"},
		"_foreign_keys": {"on"},
		"_busy_timeout": {busy},
		"_txlock":       {"deferred"},
		"_query_only":   {"on"},
	}))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	s.r = r
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := s.prepareWriter(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: prepare: %w", path, err)
	}
	return s, nil
}

// dsn builds a go-sqlite3 URI DSN for the absolute path abs. The path is
// percent-encoded so names containing '?', '#' or '%' work.
func dsn(abs string, params url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: params.Encode()}
	return u.String()
}

// Close waits for the write operations already started or queued to
// finish (their callers get their results), then closes the database.
// Writes after Close fail; the Store must not be used afterwards.
func (s *Store) Close() error {
	s.drain()
	errS := s.closeWriter()
	var errR error
	if s.r != nil {
		errR = s.r.Close()
	}
	errW := s.w.Close()
	if err := errors.Join(errS, errR, errW); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// read runs fn in a read transaction (a consistent snapshot) on the read
// pool.
func (s *Store) read(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return wrap(op, err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to undo
	if err := fn(tx); err != nil {
		return wrap(op, err)
	}
	return nil
}

// wrap adds context to err unless it already is one of the sentinel errors
// (which carry their own detail).
func wrap(op string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrQuotaExceeded) {
		return err
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// notFound returns an error matching ErrNotFound describing what.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

// queryer is satisfied by *sql.DB and *sql.Tx.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// requireAccount returns an ErrNotFound error if username has no account.
func requireAccount(ctx context.Context, q queryer, username string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE username = ?`, username).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("account %q", username)
	}
	return err
}

// millis converts t to UTC unix milliseconds.
func millis(t time.Time) int64 { return t.UnixMilli() }

// fromMillis converts UTC unix milliseconds to a UTC time.
func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// nullMillis is millis with the zero time mapped to SQL NULL.
func nullMillis(t time.Time) sql.Null[int64] {
	if t.IsZero() {
		return sql.Null[int64]{}
	}
	return sql.Null[int64]{V: millis(t), Valid: true}
}

// fromNullMillis is fromMillis with SQL NULL mapped to the zero time.
func fromNullMillis(ms sql.Null[int64]) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return fromMillis(ms.V)
}

// nonNil returns b, or an empty non-nil slice if b is nil (the driver
// binds nil as NULL, which NOT NULL BLOB columns reject).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
