package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openBatchTest opens a fresh store with a scratch table t (id TEXT
// PRIMARY KEY) for the group-commit tests.
func openBatchTest(t *testing.T) *Store {
	t.Helper()
	s, _ := openTest(t)
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE t (id TEXT PRIMARY KEY) STRICT`); err != nil {
		t.Fatal(err)
	}
	return s
}

// insert returns a write fn inserting id into t.
func insert(id string) func(tx *sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t (id) VALUES (?)`, id)
		return err
	}
}

// present reports whether id is committed in t (read through the read pool).
func present(t *testing.T, s *Store, id string) bool {
	t.Helper()
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE id = ?`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// queued returns the number of operations waiting in s's write queue.
func queued(s *Store) int {
	s.wq.mu.Lock()
	defer s.wq.mu.Unlock()
	return len(s.wq.queue)
}

// waitQueued waits (bounded) until n operations wait in s's write queue.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); queued(s) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d operations queued, want %d", queued(s), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockWriter starts a write whose fn blocks until release is closed, and
// returns once that fn runs (holding the writer: later writes queue). The
// returned channel yields the blocked write's result.
func blockWriter(t *testing.T, s *Store) (release chan struct{}, result chan error) {
	t.Helper()
	release, result = make(chan struct{}), make(chan error, 1)
	started := make(chan struct{})
	go func() {
		result <- s.write(ctx, "blocker", func(tx *sql.Tx) error {
			close(started)
			<-release
			return insert("blocker")(tx)
		})
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("blocking write did not start")
	}
	return release, result
}

// recv waits (bounded) for a result.
func recv(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no result", what)
		return nil
	}
}

// goWrite runs s.write in a goroutine and returns its result channel.
func goWrite(s *Store, ctx context.Context, op string, fn func(tx *sql.Tx) error) chan error {
	c := make(chan error, 1)
	go func() { c <- s.write(ctx, op, fn) }()
	return c
}

// TestGroupCommitBatches: writes queued while a commit is in progress are
// committed together, in one transaction, and each sees its own and the
// earlier operations' writes inside fn.
func TestGroupCommitBatches(t *testing.T) {
	s := openBatchTest(t)
	before := s.wq.commits.Load()
	release, blocked := blockWriter(t, s)
	const n = 49 // < maxBatch
	results := make([]chan error, n)
	for i := range n {
		id := strconv.Itoa(i)
		results[i] = goWrite(s, ctx, "insert "+id, func(tx *sql.Tx) error {
			if err := insert(id)(tx); err != nil {
				return err
			}
			// Read-your-writes inside the shared transaction.
			var mine, total int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE id = ?), count(*) FROM t`, id).
				Scan(&mine, &total); err != nil {
				return err
			}
			if mine != 1 || total < 2 {
				return fmt.Errorf("inside fn: own row %d, rows %d", mine, total)
			}
			return nil
		})
	}
	waitQueued(t, s, n)
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))
	for i, c := range results {
		wantNoErr(t, fmt.Sprintf("write %d", i), recv(t, c, "write"))
		if !present(t, s, strconv.Itoa(i)) {
			t.Errorf("row %d missing after its write returned", i)
		}
	}
	if got := s.wq.commits.Load() - before; got != 2 {
		t.Errorf("%d commits for %d writes, want 2 (the blocker, then one batch)", got, n+1)
	}
}

// TestGroupCommitManyWriters: real store methods from many goroutines all
// succeed, and under that concurrency commits are fewer than writes.
func TestGroupCommitManyWriters(t *testing.T) {
	s := openBatchTest(t)
	const goroutines, each = 16, 40
	for g := range goroutines {
		mustCreate(t, s, fmt.Sprintf("u%d", g))
	}
	before := s.wq.commits.Load()
	release, blocked := blockWriter(t, s) // guarantees some overlap
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if err := s.PushOffline(ctx, fmt.Sprintf("u%d", g), fmt.Appendf(nil, "<message id='%d'/>", i), t0, 0); err != nil {
					errs <- err
				}
			}
		})
	}
	waitQueued(t, s, goroutines)
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for g := range goroutines {
		if n, err := s.OfflineCount(ctx, fmt.Sprintf("u%d", g)); err != nil || n != each {
			t.Errorf("u%d: %d offline messages, %v; want %d", g, n, err, each)
		}
	}
	writes := int64(goroutines*each + 1)
	commits := s.wq.commits.Load() - before
	t.Logf("%d writes in %d commits", writes, commits)
	if commits >= writes {
		t.Errorf("%d commits for %d concurrent writes: no group commit", commits, writes)
	}
}

// TestGroupCommitFailureIsolation: an operation that fails inside a batch
// is undone alone and gets its own error; the others are committed.
func TestGroupCommitFailureIsolation(t *testing.T) {
	s := openBatchTest(t)
	mustCreate(t, s, "alice")
	before := s.wq.commits.Load()
	release, blocked := blockWriter(t, s)
	boom := errors.New("boom")
	var results []chan error
	enqueue := func(op string, fn func(tx *sql.Tx) error) {
		results = append(results, goWrite(s, ctx, op, fn))
		waitQueued(t, s, len(results)) // keep the queue order
	}
	enqueue("a", insert("a"))
	enqueue("b fails after writing", func(tx *sql.Tx) error {
		if err := insert("b")(tx); err != nil {
			return err
		}
		return boom
	})
	enqueue("c violates a constraint", func(tx *sql.Tx) error {
		if err := insert("c1")(tx); err != nil {
			return err
		}
		return insert("a")(tx) // duplicate primary key
	})
	results = append(results, make(chan error, 1))
	go func() { results[3] <- s.CreateAccount(ctx, "alice", nil) }() // exists
	waitQueued(t, s, 4)
	enqueue("d", insert("d"))
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))

	wantNoErr(t, "a", recv(t, results[0], "a"))
	if err := recv(t, results[1], "b"); !errors.Is(err, boom) {
		t.Errorf("b: %v, want boom", err)
	}
	if err := recv(t, results[2], "c"); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Errorf("c: %v, want a UNIQUE constraint error", err)
	}
	wantErr(t, "CreateAccount(alice)", recv(t, results[3], "create"), ErrExists)
	wantNoErr(t, "d", recv(t, results[4], "d"))
	for id, want := range map[string]bool{"a": true, "b": false, "c1": false, "d": true, "blocker": true} {
		if got := present(t, s, id); got != want {
			t.Errorf("row %q present = %v, want %v", id, got, want)
		}
	}
	if got := s.wq.commits.Load() - before; got != 2 {
		t.Errorf("%d commits, want 2 (the blocker, then one batch)", got)
	}
}

// TestGroupCommitLostTransaction: when SQLite ends the shared transaction
// under an operation (here the operation itself runs ROLLBACK, as SQLite
// does on an I/O error or a full disk), the operations applied before it
// fail (nothing of theirs is committed), and those after it run in a new
// transaction.
func TestGroupCommitLostTransaction(t *testing.T) {
	s := openBatchTest(t)
	release, blocked := blockWriter(t, s)
	var results []chan error
	for _, w := range []struct {
		op string
		fn func(tx *sql.Tx) error
	}{
		{"a", insert("a")},
		{"b ends the transaction", func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `ROLLBACK`)
			return err
		}},
		{"c", insert("c")},
	} {
		results = append(results, goWrite(s, ctx, w.op, w.fn))
		waitQueued(t, s, len(results))
	}
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))
	if err := recv(t, results[0], "a"); err == nil {
		t.Error("a succeeded though its transaction was rolled back")
	}
	if err := recv(t, results[1], "b"); err == nil {
		t.Error("b succeeded though it ended the transaction")
	}
	wantNoErr(t, "c", recv(t, results[2], "c"))
	if present(t, s, "a") {
		t.Error("a is present though its write failed")
	}
	if !present(t, s, "c") {
		t.Error("c missing")
	}
	// The writer is usable afterwards.
	wantNoErr(t, "e", s.write(ctx, "e", insert("e")))
}

// TestGroupCommitCancelQueued: a write whose context is cancelled while it
// waits in the queue returns at once with the context's error and is never
// applied.
func TestGroupCommitCancelQueued(t *testing.T) {
	s := openBatchTest(t)
	release, blocked := blockWriter(t, s)
	cctx, cancel := context.WithCancel(ctx)
	x := goWrite(s, cctx, "x", insert("x"))
	waitQueued(t, s, 1)
	cancel()
	// Returns while the blocker still holds the writer.
	if err := recv(t, x, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("x: %v, want context.Canceled", err)
	}
	if n := queued(s); n != 0 {
		t.Errorf("%d operations still queued, want 0", n)
	}
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))
	wantNoErr(t, "y", s.write(ctx, "y", insert("y")))
	if present(t, s, "x") {
		t.Error("cancelled write x was applied")
	}
}

// TestGroupCommitCancelInBatch: a write cancelled after it was taken into a
// batch but before its fn started is skipped; one cancelled while its fn
// runs ends its savepoint (its later statements fail with the context's
// error, rolling back its earlier ones) without harming the batch.
func TestGroupCommitCancelInBatch(t *testing.T) {
	s := openBatchTest(t)
	release, blocked := blockWriter(t, s)
	aStarted, aRelease := make(chan struct{}), make(chan struct{})
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	xctx, xcancel := context.WithCancel(ctx)
	var results []chan error
	for _, w := range []struct {
		ctx context.Context
		op  string
		fn  func(tx *sql.Tx) error
	}{
		{ctx, "pre", insert("pre")},
		{actx, "a", func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(actx, `INSERT INTO t (id) VALUES ('a1')`); err != nil {
				return err
			}
			close(aStarted)
			<-aRelease
			_, err := tx.ExecContext(actx, `INSERT INTO t (id) VALUES ('a2')`)
			return err
		}},
		{xctx, "x", insert("x")},
		{ctx, "post", insert("post")},
	} {
		results = append(results, goWrite(s, w.ctx, w.op, w.fn))
		waitQueued(t, s, len(results))
	}
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))
	select {
	case <-aStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("a did not start")
	}
	// a runs; x is in the batch, not started. Cancel both.
	xcancel()
	acancel()
	close(aRelease)
	wantNoErr(t, "pre", recv(t, results[0], "pre"))
	if err := recv(t, results[1], "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("a: %v, want context.Canceled", err)
	}
	if err := recv(t, results[2], "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("x: %v, want context.Canceled", err)
	}
	wantNoErr(t, "post", recv(t, results[3], "post"))
	for id, want := range map[string]bool{"pre": true, "a1": false, "a2": false, "x": false, "post": true} {
		if got := present(t, s, id); got != want {
			t.Errorf("row %q present = %v, want %v", id, got, want)
		}
	}
}

// TestGroupCommitPanic: a panic in one operation's fn is raised in its own
// caller, and the other operations of the batch are committed.
func TestGroupCommitPanic(t *testing.T) {
	s := openBatchTest(t)
	release, blocked := blockWriter(t, s)
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_ = s.write(ctx, "p", func(tx *sql.Tx) error {
			_ = insert("p")(tx)
			panic("p panics")
		})
	}()
	waitQueued(t, s, 1)
	q := goWrite(s, ctx, "q", insert("q"))
	waitQueued(t, s, 2)
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))
	wantNoErr(t, "q", recv(t, q, "q"))
	select {
	case v := <-panicked:
		if v != "p panics" {
			t.Errorf("caller of p recovered %v, want its panic", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("p did not return")
	}
	if present(t, s, "p") || !present(t, s, "q") {
		t.Errorf("p present %v (want false), q present %v (want true)", present(t, s, "p"), present(t, s, "q"))
	}
}

// TestCloseDrains: Close lets queued writes finish before closing the
// database, and later writes fail.
func TestCloseDrains(t *testing.T) {
	s := openBatchTest(t)
	release, blocked := blockWriter(t, s)
	var results []chan error
	for i := range 5 {
		results = append(results, goWrite(s, ctx, "w", insert(strconv.Itoa(i))))
	}
	waitQueued(t, s, 5)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.wq.mu.Lock()
		c := s.wq.closed
		s.wq.mu.Unlock()
		if c {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not start")
		}
	}
	if err := s.write(ctx, "late", insert("late")); !errors.Is(err, errClosed) {
		t.Errorf("write after Close: %v, want errClosed", err)
	}
	close(release)
	wantNoErr(t, "blocker", recv(t, blocked, "blocker"))
	for i, c := range results {
		wantNoErr(t, fmt.Sprintf("write %d", i), recv(t, c, "write"))
	}
	wantNoErr(t, "Close", recv(t, closed, "Close"))
}

const groupKill9Env = "HEARTH_STORE_GROUP_KILL9_DB"

// TestGroupCommitKill9Child is the child half of TestGroupCommitKill9: it
// writes from several goroutines at once and prints "ack N" after the
// write of message N returned.
func TestGroupCommitKill9Child(t *testing.T) {
	path := os.Getenv(groupKill9Env)
	if path == "" {
		t.Skip("child of TestGroupCommitKill9 only")
	}
	s, err := Open(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if err := s.CreateAccount(ctx, "alice", nil); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	var mu sync.Mutex
	var wg sync.WaitGroup
	const goroutines, each = 8, 250 // 2000 writes
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				n := g*each + i
				if err := s.PushOffline(ctx, "alice", fmt.Appendf(nil, "<message id='%d'/>", n), t0, 0); err != nil {
					fmt.Println("error:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("ack %d\n", n) // unbuffered: written before the next write starts
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fmt.Println("done")
	time.Sleep(time.Minute) // killed long before this
	os.Exit(2)
}

// TestGroupCommitKill9: a process writing concurrently through group
// commit is killed with SIGKILL at a random point; every write it
// acknowledged is in the database afterwards.
func TestGroupCommitKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	cmd, lines := startChild(t, "TestGroupCommitKill9Child", groupKill9Env+"="+path)
	killAt := 100 + rand.IntN(1700) // acknowledged writes before the kill
	acked := map[string]bool{}
	timeout := time.After(10 * time.Second)
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("child exited early")
			}
			switch {
			case strings.HasPrefix(line, "ack "):
				acked[strings.TrimPrefix(line, "ack ")] = true
				if len(acked) >= killAt {
					break read
				}
			case line == "ready":
			case line == "done":
				break read
			default:
				t.Fatalf("child: %s", line)
			}
		case <-timeout:
			t.Logf("timed out after %d acknowledged writes; killing", len(acked))
			break read
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Acks printed before the kill also count: they were promised.
	for line := range lines {
		if strings.HasPrefix(line, "ack ") {
			acked[strings.TrimPrefix(line, "ack ")] = true
		}
	}
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", cmd.ProcessState)
	}
	if len(acked) == 0 {
		t.Fatal("no acknowledged writes")
	}

	s := openAt(t, path)
	msgs, err := s.OfflineMessages(ctx, "alice")
	wantNoErr(t, "OfflineMessages", err)
	stored := map[string]bool{}
	for _, m := range msgs {
		id := strings.TrimSuffix(strings.TrimPrefix(string(m.Stanza), "<message id='"), "'/>")
		stored[id] = true
	}
	t.Logf("killed after %d acknowledged writes (target %d); %d stored", len(acked), killAt, len(stored))
	for id := range acked {
		if !stored[id] {
			t.Errorf("acknowledged write %s lost", id)
		}
	}
	if len(stored) < len(acked) {
		t.Errorf("%d stored < %d acknowledged", len(stored), len(acked))
	}
}
