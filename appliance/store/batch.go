package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"
)

// Group commit.
//
// Every write operation ([Store.write]) must be durable when it returns,
// and with synchronous=FULL each commit costs an fsync of the WAL (about a
// millisecond on an SSD, more on an SD card). One transaction per operation
// would serialise all writers on that fsync. Instead, operations that queue
// up while a commit is in progress are run together in the next
// transaction, each inside its own SAVEPOINT, and committed with a single
// fsync; every one of them returns only after that commit.
//
// Leader/follower: a writer that finds nobody committing becomes the leader
// and runs the queue on its own goroutine, so a lone write commits at once
// with no hand-off and no added latency. Writers that arrive meanwhile only
// queue and wait. When the leader's batch is committed and the queue is not
// empty, it hands leadership to a new goroutine (so that its own caller is
// not kept serving others) which takes up to maxBatch queued operations as
// the next batch.
//
// Failure isolation: an operation whose fn returns an error is rolled back
// to its savepoint (ROLLBACK TO), so it leaves no change behind, and gets
// its own error; the other operations of the batch are committed. A
// context cancelled while the operation is still queued removes it (it is
// never applied); once its fn has started it runs to the end of its
// savepoint, because the writer connection ignores cancellation inside
// statements (see noCancelConn): an interrupted INSERT, UPDATE or DELETE
// would make SQLite roll back the whole transaction, everyone's changes
// with it. A statement started after the cancellation still fails with the
// context's error (database/sql checks it first), so fn returns that error
// and its savepoint is rolled back.
//
// Some errors (I/O error, disk full, out of memory) make SQLite roll back
// the whole transaction by itself. That shows when the savepoint is
// released or rolled back; the operations already applied in the batch
// then fail with that error (their fn cannot safely be run twice), and
// those not yet started are run again in a fresh transaction.
//
// Writes that must not share a transaction (schema migrations, VACUUM INTO)
// do not go through write: migrations use s.w directly before Open returns,
// [Store.Snapshot] its own connection.

// maxBatch bounds the number of write operations committed in one
// transaction (and so the time one transaction holds SQLite's write lock
// against other processes).
const maxBatch = 128

// savepoint is the name of the per-operation savepoint inside a batch.
// Operations run one after another, never nested, so one name serves.
const savepoint = "hearth_write_op"

// errClosed is returned by writes after [Store.Close].
var errClosed = errors.New("store is closed")

// writeOp is one queued call of [Store.write].
type writeOp struct {
	ctx   context.Context
	op    string
	fn    func(tx *sql.Tx) error
	err   error // the result, set before done is closed
	panic any   // a value fn panicked with, re-raised in the caller
	done  chan struct{}
}

// finish records the operation's result and releases its caller.
func (o *writeOp) finish(err error) {
	o.err = wrap(o.op, err)
	close(o.done)
}

// call runs fn on tx, turning a panic into an error (the panic value is
// kept and re-raised on the caller's goroutine).
func (o *writeOp) call(tx *sql.Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			o.panic = v
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return o.fn(tx)
}

// writeQueue is the group-commit state of a Store.
type writeQueue struct {
	mu      sync.Mutex
	idle    sync.Cond    // broadcast when leading becomes false; L is &mu
	queue   []*writeOp   // waiting, not yet taken into a batch
	leading bool         // a goroutine is running batches; false implies queue is empty
	closed  bool         // set by Close: no new operations
	commits atomic.Int64 // transactions committed by write (for tests)
}

// init prepares q for use.
func (q *writeQueue) init() { q.idle.L = &q.mu }

// write runs fn inside a write transaction on the single writer connection
// and returns once the transaction that holds fn's changes is committed
// (durable), or fn's error, wrapped with op, with none of fn's changes
// applied. fn may share its transaction with other operations (group
// commit, see above); it sees their earlier changes as if they had run
// before it, and must not begin, commit or roll back transactions itself.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return wrap(op, err)
	}
	o := &writeOp{ctx: ctx, op: op, fn: fn, done: make(chan struct{})}
	q := &s.wq
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return wrap(op, errClosed)
	}
	q.queue = append(q.queue, o)
	if !q.leading {
		// Nobody is committing: the queue held nothing before o, so the
		// batch lead runs first is o alone (plus whatever queues in the
		// meantime).
		q.leading = true
		q.mu.Unlock()
		s.lead()
	} else {
		q.mu.Unlock()
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		q.mu.Lock()
		if i := slices.Index(q.queue, o); i >= 0 {
			q.queue = slices.Delete(q.queue, i, i+1)
			q.mu.Unlock()
			return wrap(op, ctx.Err())
		}
		q.mu.Unlock()
		<-o.done // taken into a batch: it finishes (skipped if not started)
	}
	if o.panic != nil {
		panic(o.panic)
	}
	return o.err
}

// lead runs one batch from the queue, then either ends the leadership
// (queue empty) or hands it to a new goroutine.
func (s *Store) lead() {
	q := &s.wq
	q.mu.Lock()
	n := min(len(q.queue), maxBatch)
	batch := make([]*writeOp, n)
	copy(batch, q.queue)
	rest := copy(q.queue, q.queue[n:])
	clear(q.queue[rest:])
	q.queue = q.queue[:rest]
	q.mu.Unlock()

	for len(batch) > 0 {
		batch = s.commitBatch(batch)
	}

	q.mu.Lock()
	if len(q.queue) == 0 {
		q.leading = false
		q.idle.Broadcast()
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	go s.lead()
}

// commitBatch runs batch in one transaction and commits it, finishing
// every operation. If SQLite rolled the transaction back by itself, it
// returns the operations not yet started, to be run in a new transaction.
func (s *Store) commitBatch(batch []*writeOp) (retry []*writeOp) {
	live := make([]*writeOp, 0, len(batch))
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.finish(err) // cancelled before it started: not applied
		} else {
			live = append(live, o)
		}
	}
	if len(live) == 0 {
		return nil
	}
	// The batch's statements are not any one caller's: BEGIN, SAVEPOINT
	// and COMMIT run uncancellable.
	bg := context.Background()
	tx, err := s.w.BeginTx(bg, nil) // BEGIN IMMEDIATE, waits up to BusyTimeout
	if err != nil {
		for _, o := range live {
			o.finish(err)
		}
		return nil
	}
	if len(live) == 1 {
		// Alone: no savepoint needed, the transaction is the operation's.
		o := live[0]
		if err := o.call(tx); err != nil {
			_ = tx.Rollback()
			o.finish(err)
			return nil
		}
		err := tx.Commit()
		if err == nil {
			s.wq.commits.Add(1)
		}
		o.finish(err)
		return nil
	}
	applied := make([]*writeOp, 0, len(live))
	for i, o := range live {
		if err := o.ctx.Err(); err != nil {
			o.finish(err)
			continue
		}
		var ferr, serr error
		if serr = execTx(bg, tx, s.ws.savepoint); serr == nil {
			if ferr = o.call(tx); ferr == nil {
				serr = execTx(bg, tx, s.ws.release)
			} else if serr = execTx(bg, tx, s.ws.rollbackTo); serr == nil {
				serr = execTx(bg, tx, s.ws.release)
			}
		}
		if serr != nil {
			// The transaction is gone (SQLite rolled it back on an I/O
			// error, a full disk...) or unusable: what was applied is lost.
			_ = tx.Rollback()
			lost := fmt.Errorf("transaction rolled back: %w", serr)
			o.finish(cmp.Or(ferr, lost))
			for _, a := range applied {
				a.finish(lost)
			}
			return live[i+1:]
		}
		if ferr != nil {
			o.finish(ferr) // its changes are undone; the others go on
			continue
		}
		applied = append(applied, o)
	}
	if len(applied) == 0 {
		_ = tx.Rollback()
		return nil
	}
	err = tx.Commit()
	if err == nil {
		s.wq.commits.Add(1)
	}
	for _, o := range applied {
		o.finish(err)
	}
	return nil
}

// drain stops accepting writes and waits until every queued one is done.
func (s *Store) drain() {
	q := &s.wq
	q.mu.Lock()
	q.closed = true
	for q.leading {
		q.idle.Wait()
	}
	q.mu.Unlock()
}

// writerConnector opens the writer connection: a go-sqlite3 connection
// whose statements ignore context cancellation (see noCancelConn).
type writerConnector struct {
	dsn string
	d   *sqlite3.SQLiteDriver
}

// Connect implements driver.Connector.
func (c writerConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.d.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(*sqlite3.SQLiteConn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("unexpected sqlite3 connection type %T", conn)
	}
	return noCancelConn{sc}, nil
}

// Driver implements driver.Connector.
func (c writerConnector) Driver() driver.Driver { return c.d }

// noCancelConn is a go-sqlite3 connection whose statements run to their
// end even if their context is cancelled. go-sqlite3 answers a cancelled
// context with sqlite3_interrupt, and SQLite answers an interrupted
// INSERT, UPDATE or DELETE by rolling back the whole transaction, which in
// a group commit holds other callers' operations. database/sql still
// refuses to start a statement whose context is already done. Transaction
// begins keep their context (an interrupted BEGIN harms nothing).
type noCancelConn struct{ c *sqlite3.SQLiteConn }

var (
	_ driver.Conn               = noCancelConn{}
	_ driver.ConnBeginTx        = noCancelConn{}
	_ driver.ConnPrepareContext = noCancelConn{}
	_ driver.ExecerContext      = noCancelConn{}
	_ driver.QueryerContext     = noCancelConn{}
	_ driver.Pinger             = noCancelConn{}
	_ driver.StmtExecContext    = noCancelStmt{}
	_ driver.StmtQueryContext   = noCancelStmt{}
)

func (n noCancelConn) Prepare(query string) (driver.Stmt, error) {
	return n.PrepareContext(context.Background(), query)
}

func (n noCancelConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := n.c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return noCancelStmt{st.(*sqlite3.SQLiteStmt)}, nil
}

func (n noCancelConn) Close() error { return n.c.Close() }

func (n noCancelConn) Begin() (driver.Tx, error) { return n.c.Begin() }

func (n noCancelConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return n.c.BeginTx(ctx, opts)
}

func (n noCancelConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return n.c.ExecContext(context.WithoutCancel(ctx), query, args)
}

func (n noCancelConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return n.c.QueryContext(context.WithoutCancel(ctx), query, args)
}

func (n noCancelConn) Ping(ctx context.Context) error { return n.c.Ping(ctx) }

// noCancelStmt is a prepared statement of a noCancelConn.
type noCancelStmt struct{ s *sqlite3.SQLiteStmt }

func (n noCancelStmt) Close() error  { return n.s.Close() }
func (n noCancelStmt) NumInput() int { return n.s.NumInput() }

func (n noCancelStmt) Exec(args []driver.Value) (driver.Result, error) { return n.s.Exec(args) }

func (n noCancelStmt) Query(args []driver.Value) (driver.Rows, error) { return n.s.Query(args) }

func (n noCancelStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return n.s.ExecContext(context.WithoutCancel(ctx), args)
}

func (n noCancelStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return n.s.QueryContext(context.WithoutCancel(ctx), args)
}
