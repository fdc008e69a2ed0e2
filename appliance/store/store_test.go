package store

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var ctx = context.Background()

// t0 is the fake clock's epoch.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock returns a clock starting at t0 that advances 1 s per call.
func fakeClock() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return t0.Add(time.Duration(n.Add(1)-1) * time.Second) }
}

// openAt opens the store at path with a fake clock, closing it at cleanup.
func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	s.now = fakeClock()
	t.Cleanup(func() { s.Close() })
	return s
}

// openTest opens a fresh store in a temporary directory.
func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hearth.db")
	return openAt(t, path), path
}

// key returns a well-formed SCRAM key for hash whose bytes are derived from
// seed.
func key(hash, seed string) ScramKey {
	var stored, server []byte
	switch hash {
	case "SHA-1":
		a, b := sha1.Sum([]byte("st"+seed)), sha1.Sum([]byte("sv"+seed))
		stored, server = a[:], b[:]
	case "SHA-256":
		a, b := sha256.Sum256([]byte("st"+seed)), sha256.Sum256([]byte("sv"+seed))
		stored, server = a[:], b[:]
	case "SHA-512":
		a, b := sha512.Sum512([]byte("st"+seed)), sha512.Sum512([]byte("sv"+seed))
		stored, server = a[:], b[:]
	}
	return ScramKey{Hash: hash, Salt: []byte("salt-" + seed), Iterations: 4096, StoredKey: stored, ServerKey: server}
}

func mustCreate(t *testing.T, s *Store, users ...string) {
	t.Helper()
	for _, u := range users {
		if err := s.CreateAccount(ctx, u, []ScramKey{key("SHA-1", u), key("SHA-256", u)}); err != nil {
			t.Fatalf("CreateAccount(%q): %v", u, err)
		}
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func wantNoErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// schemaVersion returns the highest applied migration version.
func schemaVersion(t *testing.T, s *Store) (version, rows int) {
	t.Helper()
	if err := s.r.QueryRowContext(ctx, `SELECT coalesce(max(version), 0), count(*) FROM schema_migrations`).
		Scan(&version, &rows); err != nil {
		t.Fatal(err)
	}
	return version, rows
}

func TestOpenPragmas(t *testing.T) {
	s, _ := openTest(t)
	check := func(pool, pragma, want string) {
		t.Helper()
		db := s.w
		if pool == "r" {
			db = s.r
		}
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", pool, pragma, err)
		}
		if got != want {
			t.Errorf("%s PRAGMA %s = %q, want %q", pool, pragma, got, want)
		}
	}
	for _, pool := range []string{"w", "r"} {
		check(pool, "journal_mode", "wal")
		check(pool, "synchronous", "2") // FULL
		check(pool, "foreign_keys", "1")
		check(pool, "busy_timeout", "5000")
	}
	check("r", "query_only", "1")
	check("w", "query_only", "0")
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	// Parent "directory" is a regular file.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(f, "hearth.db")); err == nil {
		t.Error("Open under a regular file succeeded")
	}
	// Not a database.
	bad := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(bad, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(bad); err == nil {
		s.Close()
		t.Error("Open of a non-database succeeded")
	}
}

func TestOpenCreatesParentDirAndOddNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a b", "c?d#e%f", "hearth.db")
	s := openAt(t, path)
	mustCreate(t, s, "alice")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %q: %v", path, err)
	}
}

func TestMigrations(t *testing.T) {
	s, path := openTest(t)
	v, n := schemaVersion(t, s)
	if v != len(migrations) || n != len(migrations) {
		t.Fatalf("schema version %d with %d rows, want %d", v, n, len(migrations))
	}
	var applied int64
	wantNoErr(t, "applied_at", s.r.QueryRowContext(ctx, `SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(&applied))
	if applied <= 0 {
		t.Errorf("applied_at = %d", applied)
	}
	mustCreate(t, s, "alice")
	wantNoErr(t, "close", s.Close())

	// Reopening applies nothing again and keeps the data.
	s = openAt(t, path)
	v2, n2 := schemaVersion(t, s)
	if v2 != v || n2 != n {
		t.Fatalf("after reopen: version %d rows %d, want %d %d", v2, n2, v, n)
	}
	var applied2 int64
	wantNoErr(t, "applied_at", s.r.QueryRowContext(ctx, `SELECT applied_at FROM schema_migrations WHERE version = 1`).Scan(&applied2))
	if applied2 != applied {
		t.Errorf("migration 1 re-applied: applied_at %d -> %d", applied, applied2)
	}
	ok, err := s.AccountExists(ctx, "alice")
	if err != nil || !ok {
		t.Fatalf("AccountExists after reopen = %v, %v", ok, err)
	}
	wantNoErr(t, "close", s.Close())

	// An appended migration is applied once, on the next open.
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = append(append([]string(nil), saved...), `CREATE TABLE extra (x INTEGER) STRICT`)
	for range 2 {
		s = openAt(t, path)
		if v, n := schemaVersion(t, s); v != len(migrations) || n != len(migrations) {
			t.Fatalf("with appended migration: version %d rows %d, want %d", v, n, len(migrations))
		}
		wantNoErr(t, "close", s.Close())
	}

	// A database from a newer binary is refused.
	migrations = saved
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open of a newer-schema database succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer-schema database: %v", err)
	}

	// A failing migration is rolled back and reported.
	migrations = append(append([]string(nil), saved...), `CREATE TABLE extra (x INTEGER) STRICT`,
		`CREATE TABLE ok_then_fail (x INTEGER); SELECT * FROM no_such_table`)
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open with a failing migration succeeded")
	}
	migrations = migrations[:len(migrations)-1]
	s = openAt(t, path)
	var tables int
	wantNoErr(t, "count tables", s.r.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE name = 'ok_then_fail'`).Scan(&tables))
	if tables != 0 {
		t.Error("failed migration was not rolled back")
	}
}

func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(path)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	s := openAt(t, path)
	if v, n := schemaVersion(t, s); v != len(migrations) || n != len(migrations) {
		t.Fatalf("version %d rows %d, want %d", v, n, len(migrations))
	}
}

func TestAccounts(t *testing.T) {
	s, _ := openTest(t)

	accts, err := s.Accounts(ctx)
	if err != nil || len(accts) != 0 {
		t.Fatalf("Accounts on empty store = %v, %v", accts, err)
	}
	mustCreate(t, s, "bob", "alice")
	wantErr(t, "CreateAccount duplicate", s.CreateAccount(ctx, "alice", nil), ErrExists)
	wantNoErr(t, "CreateAccount without keys", s.CreateAccount(ctx, "carol", nil))

	for _, bad := range [][]ScramKey{
		{{Hash: "MD5", Salt: []byte("s"), Iterations: 1, StoredKey: make([]byte, 16), ServerKey: make([]byte, 16)}},
		{key("SHA-1", "x"), key("SHA-1", "y")},
		{func() ScramKey { k := key("SHA-256", "x"); k.Iterations = 0; return k }()},
		{func() ScramKey { k := key("SHA-256", "x"); k.Salt = nil; return k }()},
		{func() ScramKey { k := key("SHA-256", "x"); k.StoredKey = k.StoredKey[:20]; return k }()},
		{func() ScramKey { k := key("SHA-256", "x"); k.ServerKey = nil; return k }()},
	} {
		if err := s.CreateAccount(ctx, "dave", bad); err == nil {
			t.Errorf("CreateAccount with bad keys %+v succeeded", bad)
		}
		if err := s.SetCredentials(ctx, "alice", bad); err == nil {
			t.Errorf("SetCredentials with bad keys %+v succeeded", bad)
		}
	}
	if err := s.CreateAccount(ctx, "", nil); err == nil {
		t.Error("CreateAccount with empty username succeeded")
	}
	if ok, _ := s.AccountExists(ctx, "dave"); ok {
		t.Fatal("dave exists after failed creates")
	}

	// Credentials.
	got, err := s.Credentials(ctx, "alice", "SHA-256")
	wantNoErr(t, "Credentials", err)
	if want := key("SHA-256", "alice"); !reflect.DeepEqual(got, want) {
		t.Errorf("Credentials = %+v, want %+v", got, want)
	}
	_, err = s.Credentials(ctx, "alice", "SHA-512")
	wantErr(t, "Credentials missing hash", err, ErrNotFound)
	_, err = s.Credentials(ctx, "nobody", "SHA-1")
	wantErr(t, "Credentials missing user", err, ErrNotFound)
	_, err = s.Credentials(ctx, "carol", "SHA-1")
	wantErr(t, "Credentials of keyless user", err, ErrNotFound)

	// SetCredentials replaces all keys.
	wantNoErr(t, "SetCredentials", s.SetCredentials(ctx, "alice", []ScramKey{key("SHA-512", "new")}))
	_, err = s.Credentials(ctx, "alice", "SHA-1")
	wantErr(t, "old SHA-1 key after SetCredentials", err, ErrNotFound)
	got, err = s.Credentials(ctx, "alice", "SHA-512")
	wantNoErr(t, "Credentials SHA-512", err)
	if want := key("SHA-512", "new"); !reflect.DeepEqual(got, want) {
		t.Errorf("Credentials = %+v, want %+v", got, want)
	}
	if k, _ := s.Credentials(ctx, "bob", "SHA-1"); !reflect.DeepEqual(k, key("SHA-1", "bob")) {
		t.Error("SetCredentials(alice) changed bob's keys")
	}
	wantErr(t, "SetCredentials missing user", s.SetCredentials(ctx, "nobody", nil), ErrNotFound)

	// AccountExists.
	for u, want := range map[string]bool{"alice": true, "bob": true, "carol": true, "nobody": false, "Alice": false} {
		ok, err := s.AccountExists(ctx, u)
		if err != nil || ok != want {
			t.Errorf("AccountExists(%q) = %v, %v; want %v", u, ok, err, want)
		}
	}

	// SetLastActivity and Accounts.
	logout := time.Date(2025, 4, 1, 10, 30, 0, 123456789, time.FixedZone("X", 3600))
	wantNoErr(t, "SetLastActivity", s.SetLastActivity(ctx, "bob", logout, "gone fishing"))
	wantErr(t, "SetLastActivity missing user", s.SetLastActivity(ctx, "nobody", logout, ""), ErrNotFound)
	accts, err = s.Accounts(ctx)
	wantNoErr(t, "Accounts", err)
	want := []Account{
		{Username: "alice", Created: t0.Add(time.Second)},
		{Username: "bob", Created: t0},
		{Username: "carol", Created: t0.Add(3 * time.Second)},
	}
	want[1].LastLogout = logout.Truncate(time.Millisecond).UTC()
	want[1].LastStatus = "gone fishing"
	if !reflect.DeepEqual(accts, want) {
		t.Errorf("Accounts =\n%+v\nwant\n%+v", accts, want)
	}
	wantNoErr(t, "SetLastActivity zero", s.SetLastActivity(ctx, "bob", time.Time{}, ""))
	accts, _ = s.Accounts(ctx)
	if !accts[1].LastLogout.IsZero() || accts[1].LastStatus != "" {
		t.Errorf("after clearing: %+v", accts[1])
	}

	// DeleteAccount.
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	wantErr(t, "DeleteAccount again", s.DeleteAccount(ctx, "alice"), ErrNotFound)
	if ok, _ := s.AccountExists(ctx, "alice"); ok {
		t.Error("alice exists after delete")
	}
	_, err = s.Credentials(ctx, "alice", "SHA-512")
	wantErr(t, "Credentials after delete", err, ErrNotFound)
	mustCreate(t, s, "alice") // can be re-created
}

func TestRoster(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")

	items, ver, err := s.Roster(ctx, "alice")
	if err != nil || len(items) != 0 || ver != 0 {
		t.Fatalf("empty Roster = %v, %d, %v", items, ver, err)
	}

	var last int64
	bumped := func(what string, v int64, err error) {
		t.Helper()
		wantNoErr(t, what, err)
		if v <= last {
			t.Fatalf("%s: version %d not > %d", what, v, last)
		}
		last = v
		if cur, err := s.RosterVersion(ctx, "alice"); err != nil || cur != v {
			t.Fatalf("%s: RosterVersion = %d, %v; want %d", what, cur, err, v)
		}
	}

	zed := RosterItem{JID: "zed@example.net", Name: "Zed", Subscription: "both", Groups: []string{"Work", "Friends", "Work"}}
	v, err := s.PutRosterItem(ctx, "alice", zed)
	bumped("Put zed", v, err)
	amy := RosterItem{JID: "amy@example.org", Ask: true, Approved: true}
	v, err = s.PutRosterItem(ctx, "alice", amy)
	bumped("Put amy", v, err)

	// Other users' changes don't disturb alice's roster but may advance
	// the shared counter.
	if _, err := s.PutRosterItem(ctx, "bob", RosterItem{JID: "x@y", Subscription: "to"}); err != nil {
		t.Fatal(err)
	}

	items, ver, err = s.Roster(ctx, "alice")
	wantNoErr(t, "Roster", err)
	wantItems := []RosterItem{
		{JID: "amy@example.org", Subscription: "none", Ask: true, Approved: true},
		{JID: "zed@example.net", Name: "Zed", Subscription: "both", Groups: []string{"Work", "Friends"}},
	}
	if !reflect.DeepEqual(items, wantItems) || ver != last {
		t.Fatalf("Roster =\n%+v %d\nwant\n%+v %d", items, ver, wantItems, last)
	}
	it, err := s.RosterItem(ctx, "alice", "zed@example.net")
	if err != nil || !reflect.DeepEqual(it, wantItems[1]) {
		t.Fatalf("RosterItem = %+v, %v", it, err)
	}
	it, err = s.RosterItem(ctx, "alice", "amy@example.org")
	if err != nil || !reflect.DeepEqual(it, wantItems[0]) {
		t.Fatalf("RosterItem = %+v, %v", it, err)
	}

	// Upsert replaces every field including groups.
	zed2 := RosterItem{JID: "zed@example.net", Subscription: "from", Groups: []string{"Family"}}
	v, err = s.PutRosterItem(ctx, "alice", zed2)
	bumped("Put zed again", v, err)
	if it, _ := s.RosterItem(ctx, "alice", "zed@example.net"); !reflect.DeepEqual(it, zed2) {
		t.Errorf("after upsert: %+v, want %+v", it, zed2)
	}
	// Unchanged put still bumps.
	v, err = s.PutRosterItem(ctx, "alice", zed2)
	bumped("Put unchanged", v, err)
	zed3 := zed2
	zed3.Groups = nil
	v, err = s.PutRosterItem(ctx, "alice", zed3)
	bumped("Put no groups", v, err)
	if it, _ := s.RosterItem(ctx, "alice", "zed@example.net"); it.Groups != nil {
		t.Errorf("groups not cleared: %+v", it)
	}

	// Error paths; the version is unchanged.
	_, err = s.RosterItem(ctx, "alice", "nobody@example.net")
	wantErr(t, "RosterItem missing", err, ErrNotFound)
	_, err = s.RosterItem(ctx, "nobody", "zed@example.net")
	wantErr(t, "RosterItem missing user", err, ErrNotFound)
	_, err = s.DeleteRosterItem(ctx, "alice", "nobody@example.net")
	wantErr(t, "DeleteRosterItem missing", err, ErrNotFound)
	_, err = s.DeleteRosterItem(ctx, "nobody", "zed@example.net")
	wantErr(t, "DeleteRosterItem missing user", err, ErrNotFound)
	_, err = s.PutRosterItem(ctx, "nobody", zed)
	wantErr(t, "PutRosterItem missing user", err, ErrNotFound)
	if _, err := s.PutRosterItem(ctx, "alice", RosterItem{JID: "q@x", Subscription: "sideways"}); err == nil {
		t.Error("PutRosterItem with bad subscription succeeded")
	}
	if _, err := s.PutRosterItem(ctx, "alice", RosterItem{}); err == nil {
		t.Error("PutRosterItem with empty JID succeeded")
	}
	_, _, err = s.Roster(ctx, "nobody")
	wantErr(t, "Roster missing user", err, ErrNotFound)
	_, err = s.RosterVersion(ctx, "nobody")
	wantErr(t, "RosterVersion missing user", err, ErrNotFound)
	if cur, _ := s.RosterVersion(ctx, "alice"); cur != last {
		t.Fatalf("failed operations changed the version: %d -> %d", last, cur)
	}

	// Delete.
	v, err = s.DeleteRosterItem(ctx, "alice", "zed@example.net")
	bumped("Delete zed", v, err)
	items, ver, _ = s.Roster(ctx, "alice")
	if !reflect.DeepEqual(items, wantItems[:1]) || ver != last {
		t.Errorf("after delete: %+v %d", items, ver)
	}
	var groups int
	wantNoErr(t, "count groups", s.r.QueryRowContext(ctx,
		`SELECT count(*) FROM roster_groups WHERE username = 'alice' AND jid = 'zed@example.net'`).Scan(&groups))
	if groups != 0 {
		t.Errorf("%d groups left after item delete", groups)
	}

	// Versions are never reused across account deletion and re-creation.
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	mustCreate(t, s, "alice")
	if v, _ := s.RosterVersion(ctx, "alice"); v != 0 {
		t.Errorf("fresh roster version %d, want 0", v)
	}
	v, err = s.PutRosterItem(ctx, "alice", amy)
	bumped("Put after re-create", v, err)
}

func TestSubscriptionRequests(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob") // clock: t0, t0+1s

	reqs, err := s.SubscriptionRequests(ctx, "alice")
	if err != nil || reqs != nil {
		t.Fatalf("SubscriptionRequests empty = %v, %v", reqs, err)
	}
	wantNoErr(t, "Add zed", s.AddSubscriptionRequest(ctx, "alice", "zed@x", []byte("<presence type='subscribe' id='1'/>")))       // t0+2s
	wantNoErr(t, "Add amy", s.AddSubscriptionRequest(ctx, "alice", "amy@x", []byte("<presence type='subscribe'/>")))              // t0+3s
	wantNoErr(t, "Add to bob", s.AddSubscriptionRequest(ctx, "bob", "zed@x", nil))                                                // t0+4s
	wantNoErr(t, "Add zed again", s.AddSubscriptionRequest(ctx, "alice", "zed@x", []byte("<presence type='subscribe' id='2'/>"))) // t0+5s
	wantErr(t, "Add missing user", s.AddSubscriptionRequest(ctx, "nobody", "zed@x", nil), ErrNotFound)

	reqs, err = s.SubscriptionRequests(ctx, "alice")
	wantNoErr(t, "SubscriptionRequests", err)
	want := []SubscriptionRequest{
		{Contact: "amy@x", Stanza: []byte("<presence type='subscribe'/>"), Received: t0.Add(3 * time.Second)},
		{Contact: "zed@x", Stanza: []byte("<presence type='subscribe' id='2'/>"), Received: t0.Add(5 * time.Second)},
	}
	if !reflect.DeepEqual(reqs, want) {
		t.Fatalf("SubscriptionRequests =\n%+v\nwant\n%+v", reqs, want)
	}
	reqs, _ = s.SubscriptionRequests(ctx, "bob")
	if len(reqs) != 1 || len(reqs[0].Stanza) != 0 {
		t.Errorf("bob's requests = %+v", reqs)
	}

	// Independent of the roster.
	if _, err := s.PutRosterItem(ctx, "alice", RosterItem{JID: "zed@x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteRosterItem(ctx, "alice", "zed@x"); err != nil {
		t.Fatal(err)
	}
	if reqs, _ := s.SubscriptionRequests(ctx, "alice"); len(reqs) != 2 {
		t.Errorf("roster changes touched requests: %+v", reqs)
	}

	wantNoErr(t, "Delete", s.DeleteSubscriptionRequest(ctx, "alice", "zed@x"))
	wantNoErr(t, "Delete absent", s.DeleteSubscriptionRequest(ctx, "alice", "zed@x"))
	wantNoErr(t, "Delete missing user", s.DeleteSubscriptionRequest(ctx, "nobody", "zed@x"))
	reqs, _ = s.SubscriptionRequests(ctx, "alice")
	if !reflect.DeepEqual(reqs, want[:1]) {
		t.Errorf("after delete: %+v", reqs)
	}
	_, err = s.SubscriptionRequests(ctx, "nobody")
	wantErr(t, "SubscriptionRequests missing user", err, ErrNotFound)
}

func TestOffline(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")

	msgs, err := s.OfflineMessages(ctx, "alice")
	if err != nil || msgs != nil {
		t.Fatalf("OfflineMessages empty = %v, %v", msgs, err)
	}
	stamp := time.Date(2025, 5, 6, 7, 8, 9, 999999999, time.FixedZone("Y", -7200))
	for i := range 3 {
		err := s.PushOffline(ctx, "alice", fmt.Appendf(nil, "<message id='%d'/>", i), stamp.Add(time.Duration(i)*time.Minute), 3)
		wantNoErr(t, "PushOffline", err)
	}
	wantNoErr(t, "PushOffline bob", s.PushOffline(ctx, "bob", []byte("<message/>"), stamp, 0))
	err = s.PushOffline(ctx, "alice", []byte("<message id='overflow'/>"), stamp, 3)
	wantErr(t, "PushOffline over quota", err, ErrQuotaExceeded)
	wantErr(t, "PushOffline missing user", s.PushOffline(ctx, "nobody", []byte("<message/>"), stamp, 0), ErrNotFound)

	n, err := s.OfflineCount(ctx, "alice")
	if err != nil || n != 3 {
		t.Fatalf("OfflineCount = %d, %v; want 3", n, err)
	}
	msgs, err = s.OfflineMessages(ctx, "alice")
	wantNoErr(t, "OfflineMessages", err)
	if len(msgs) != 3 {
		t.Fatalf("got %d messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("<message id='%d'/>", i); string(m.Stanza) != want {
			t.Errorf("message %d = %s, want %s", i, m.Stanza, want)
		}
		if want := stamp.Add(time.Duration(i) * time.Minute).Truncate(time.Millisecond).UTC(); m.Stored != want {
			t.Errorf("message %d stored %v, want %v", i, m.Stored, want)
		}
		if i > 0 && m.ID <= msgs[i-1].ID {
			t.Errorf("IDs not increasing: %d then %d", msgs[i-1].ID, m.ID)
		}
	}

	// Unlimited ignores the count.
	wantNoErr(t, "PushOffline unlimited", s.PushOffline(ctx, "alice", []byte("<message id='3'/>"), stamp, 0))
	wantNoErr(t, "PushOffline negative max", s.PushOffline(ctx, "alice", []byte("<message id='4'/>"), stamp, -1))

	// Delete up to the second message: the rest, and bob's, stay.
	wantNoErr(t, "DeleteOffline", s.DeleteOffline(ctx, "alice", msgs[1].ID))
	msgs2, _ := s.OfflineMessages(ctx, "alice")
	if len(msgs2) != 3 || msgs2[0].ID != msgs[2].ID || string(msgs2[2].Stanza) != "<message id='4'/>" {
		t.Fatalf("after DeleteOffline: %+v", msgs2)
	}
	if n, _ := s.OfflineCount(ctx, "bob"); n != 1 {
		t.Errorf("bob's count %d after alice's delete", n)
	}
	wantNoErr(t, "DeleteOffline nothing", s.DeleteOffline(ctx, "alice", 0))
	wantNoErr(t, "DeleteOffline missing user", s.DeleteOffline(ctx, "nobody", 1<<62))
	wantNoErr(t, "DeleteOffline all", s.DeleteOffline(ctx, "alice", msgs2[2].ID))
	if n, _ := s.OfflineCount(ctx, "alice"); n != 0 {
		t.Errorf("count %d after deleting all", n)
	}
	// IDs are never reused.
	wantNoErr(t, "PushOffline after delete", s.PushOffline(ctx, "alice", []byte("<message/>"), stamp, 1))
	msgs3, _ := s.OfflineMessages(ctx, "alice")
	if len(msgs3) != 1 || msgs3[0].ID <= msgs2[2].ID {
		t.Errorf("ID reused: %+v after %d", msgs3, msgs2[2].ID)
	}

	_, err = s.OfflineMessages(ctx, "nobody")
	wantErr(t, "OfflineMessages missing user", err, ErrNotFound)
	_, err = s.OfflineCount(ctx, "nobody")
	wantErr(t, "OfflineCount missing user", err, ErrNotFound)
}

func TestVCardAndPrivateXML(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")

	_, err := s.VCard(ctx, "alice")
	wantErr(t, "VCard unset", err, ErrNotFound)
	_, err = s.VCard(ctx, "nobody")
	wantErr(t, "VCard missing user", err, ErrNotFound)
	v1 := []byte("<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>")
	v2 := []byte("<vCard xmlns='vcard-temp'><FN>Alice A.</FN></vCard>")
	wantNoErr(t, "SetVCard", s.SetVCard(ctx, "alice", v1))
	wantNoErr(t, "SetVCard replace", s.SetVCard(ctx, "alice", v2))
	if got, err := s.VCard(ctx, "alice"); err != nil || string(got) != string(v2) {
		t.Fatalf("VCard = %s, %v", got, err)
	}
	wantNoErr(t, "SetVCard empty", s.SetVCard(ctx, "alice", []byte{}))
	_, err = s.VCard(ctx, "alice")
	wantErr(t, "VCard after delete", err, ErrNotFound)
	wantNoErr(t, "SetVCard nil when unset", s.SetVCard(ctx, "alice", nil))
	wantErr(t, "SetVCard missing user", s.SetVCard(ctx, "nobody", v1), ErrNotFound)

	const bm, rn = "storage:bookmarks", "storage:rosternotes"
	_, err = s.PrivateXML(ctx, "alice", bm)
	wantErr(t, "PrivateXML unset", err, ErrNotFound)
	b1 := []byte("<storage xmlns='storage:bookmarks'/>")
	b2 := []byte("<storage xmlns='storage:bookmarks'><conference jid='a@b'/></storage>")
	r1 := []byte("<storage xmlns='storage:rosternotes'/>")
	wantNoErr(t, "SetPrivateXML", s.SetPrivateXML(ctx, "alice", bm, b1))
	wantNoErr(t, "SetPrivateXML replace", s.SetPrivateXML(ctx, "alice", bm, b2))
	wantNoErr(t, "SetPrivateXML other ns", s.SetPrivateXML(ctx, "alice", rn, r1))
	if got, err := s.PrivateXML(ctx, "alice", bm); err != nil || string(got) != string(b2) {
		t.Fatalf("PrivateXML = %s, %v", got, err)
	}
	if got, err := s.PrivateXML(ctx, "alice", rn); err != nil || string(got) != string(r1) {
		t.Fatalf("PrivateXML = %s, %v", got, err)
	}
	wantNoErr(t, "SetPrivateXML nil", s.SetPrivateXML(ctx, "alice", bm, nil))
	_, err = s.PrivateXML(ctx, "alice", bm)
	wantErr(t, "PrivateXML after delete", err, ErrNotFound)
	if _, err := s.PrivateXML(ctx, "alice", rn); err != nil {
		t.Errorf("deleting one namespace removed another: %v", err)
	}
	wantErr(t, "SetPrivateXML missing user", s.SetPrivateXML(ctx, "nobody", bm, b1), ErrNotFound)
	_, err = s.PrivateXML(ctx, "nobody", bm)
	wantErr(t, "PrivateXML missing user", err, ErrNotFound)
}

// populate gives user data in every per-user table.
func populate(t *testing.T, s *Store, user string) {
	t.Helper()
	mustCreate(t, s, user)
	if _, err := s.PutRosterItem(ctx, user, RosterItem{JID: "c@x", Subscription: "both", Groups: []string{"G"}}); err != nil {
		t.Fatal(err)
	}
	wantNoErr(t, "AddSubscriptionRequest", s.AddSubscriptionRequest(ctx, user, "d@x", []byte("<presence/>")))
	wantNoErr(t, "PushOffline", s.PushOffline(ctx, user, []byte("<message/>"), t0, 0))
	wantNoErr(t, "SetVCard", s.SetVCard(ctx, user, []byte("<vCard/>")))
	wantNoErr(t, "SetPrivateXML", s.SetPrivateXML(ctx, user, "ns", []byte("<x xmlns='ns'/>")))
	wantNoErr(t, "SetLastActivity", s.SetLastActivity(ctx, user, t0, "bye"))
}

// userTables are the per-user tables and their username column.
var userTables = []string{"accounts", "scram_keys", "roster_items", "roster_groups",
	"subscription_requests", "offline_messages", "vcards", "private_xml"}

func rowsOf(t *testing.T, s *Store, user string) map[string]int {
	t.Helper()
	m := make(map[string]int)
	for _, tbl := range userTables {
		var n int
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM `+tbl+` WHERE username = ?`, user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		m[tbl] = n
	}
	return m
}

func TestDeleteAccountCascades(t *testing.T) {
	s, _ := openTest(t)
	populate(t, s, "alice")
	populate(t, s, "bob")
	for tbl, n := range rowsOf(t, s, "alice") {
		if n == 0 {
			t.Fatalf("populate left %s empty", tbl)
		}
	}
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	for tbl, n := range rowsOf(t, s, "alice") {
		if n != 0 {
			t.Errorf("%d rows of alice left in %s", n, tbl)
		}
	}
	for tbl, n := range rowsOf(t, s, "bob") {
		if n == 0 {
			t.Errorf("deleting alice emptied bob's %s", tbl)
		}
	}
	// Re-created account starts empty.
	mustCreate(t, s, "alice")
	if items, _, _ := s.Roster(ctx, "alice"); len(items) != 0 {
		t.Error("roster survived")
	}
	if n, _ := s.OfflineCount(ctx, "alice"); n != 0 {
		t.Error("offline survived")
	}
	var fkErrors int
	wantNoErr(t, "foreign_key_check", s.r.QueryRowContext(ctx, `SELECT count(*) FROM pragma_foreign_key_check`).Scan(&fkErrors))
	if fkErrors != 0 {
		t.Errorf("%d foreign key violations", fkErrors)
	}
}

func TestPersistence(t *testing.T) {
	s, path := openTest(t)
	populate(t, s, "alice")
	items, ver, _ := s.Roster(ctx, "alice")
	before := rowsOf(t, s, "alice")
	wantNoErr(t, "Close", s.Close())

	s = openAt(t, path)
	if got := rowsOf(t, s, "alice"); !reflect.DeepEqual(got, before) {
		t.Errorf("rows after reopen %v, want %v", got, before)
	}
	items2, ver2, err := s.Roster(ctx, "alice")
	if err != nil || !reflect.DeepEqual(items2, items) || ver2 != ver {
		t.Errorf("Roster after reopen = %+v %d %v; want %+v %d", items2, ver2, err, items, ver)
	}
	if k, err := s.Credentials(ctx, "alice", "SHA-256"); err != nil || !reflect.DeepEqual(k, key("SHA-256", "alice")) {
		t.Errorf("Credentials after reopen = %+v, %v", k, err)
	}
	accts, _ := s.Accounts(ctx)
	if len(accts) != 1 || !accts[0].LastLogout.Equal(t0) || accts[0].LastStatus != "bye" {
		t.Errorf("Accounts after reopen = %+v", accts)
	}
	// The counter continues after reopen.
	v, err := s.PutRosterItem(ctx, "alice", RosterItem{JID: "e@x"})
	if err != nil || v <= ver {
		t.Errorf("version after reopen %d (%v), want > %d", v, err, ver)
	}
}

// TestConcurrentWriters simulates the CLI writing while the server runs:
// two Stores on one file, several goroutines each, writing to the same and
// to separate accounts. None may fail with SQLITE_BUSY.
func TestConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	a, b := openAt(t, path), openAt(t, path)
	mustCreate(t, a, "shared")
	const goroutines, ops = 3, 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*goroutines*ops*3)
	for si, s := range []*Store{a, b} {
		for g := range goroutines {
			wg.Go(func() {
				user := fmt.Sprintf("u%d-%d", si, g)
				if err := s.CreateAccount(ctx, user, []ScramKey{key("SHA-256", user)}); err != nil {
					errs <- err
					return
				}
				for i := range ops {
					if _, err := s.PutRosterItem(ctx, "shared", RosterItem{JID: fmt.Sprintf("%s-%d@x", user, i)}); err != nil {
						errs <- err
					}
					if err := s.PushOffline(ctx, user, []byte("<message/>"), t0, 0); err != nil {
						errs <- err
					}
					// Reads interleaved with the other handle's writes.
					if _, _, err := s.Roster(ctx, "shared"); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	items, ver, err := b.Roster(ctx, "shared")
	wantNoErr(t, "Roster", err)
	if len(items) != 2*goroutines*ops {
		t.Errorf("shared roster has %d items, want %d", len(items), 2*goroutines*ops)
	}
	if ver != int64(2*goroutines*ops) {
		t.Errorf("roster version %d, want %d (one per put)", ver, 2*goroutines*ops)
	}
	accts, _ := a.Accounts(ctx)
	if len(accts) != 1+2*goroutines {
		t.Errorf("%d accounts, want %d", len(accts), 1+2*goroutines)
	}
	for _, acct := range accts[1:] {
		if n, _ := a.OfflineCount(ctx, acct.Username); n != ops {
			t.Errorf("%s has %d offline messages, want %d", acct.Username, n, ops)
		}
	}
}

const kill9Env = "HEARTH_STORE_KILL9_DB"

// TestKill9Child is the child half of TestKill9Durability; it does nothing
// unless run by it.
func TestKill9Child(t *testing.T) {
	path := os.Getenv(kill9Env)
	if path == "" {
		t.Skip("child of TestKill9Durability only")
	}
	s, err := Open(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if err := s.CreateAccount(ctx, "alice", []ScramKey{key("SHA-256", "alice")}); err != nil {
		fail(err)
	}
	for i := range 5 {
		if err := s.PushOffline(ctx, "alice", fmt.Appendf(nil, "<message id='%d'/>", i), t0, 0); err != nil {
			fail(err)
		}
	}
	if _, err := s.PutRosterItem(ctx, "alice", RosterItem{JID: "bob@x", Subscription: "both"}); err != nil {
		fail(err)
	}
	// An open, uncommitted transaction at the moment of the kill.
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		fail(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (username, created) VALUES ('ghost', 0)`); err != nil {
		fail(err)
	}
	fmt.Println("committed")
	time.Sleep(time.Minute) // killed long before this
	os.Exit(2)
}

// TestKill9Durability checks that committed writes survive SIGKILL of the
// writing process (with the store left open and a transaction in flight)
// and that uncommitted ones vanish.
func TestKill9Durability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	cmd, lines := startChild(t, "TestKill9Child", kill9Env+"="+path)
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("child exited without committing")
			}
			if line == "committed" {
				break wait
			}
			t.Logf("child: %s", line)
		case <-timeout:
			t.Fatal("timed out waiting for the child")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // drain so the reader goroutine ends
		}
	}()
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}

	s := openAt(t, path)
	if ok, err := s.AccountExists(ctx, "alice"); err != nil || !ok {
		t.Fatalf("committed account lost: %v, %v", ok, err)
	}
	if n, err := s.OfflineCount(ctx, "alice"); err != nil || n != 5 {
		t.Errorf("OfflineCount = %d, %v; want 5", n, err)
	}
	if it, err := s.RosterItem(ctx, "alice", "bob@x"); err != nil || it.Subscription != "both" {
		t.Errorf("RosterItem = %+v, %v", it, err)
	}
	if ok, _ := s.AccountExists(ctx, "ghost"); ok {
		t.Error("uncommitted account survived")
	}
	// The database is writable again (the dead process's locks are gone).
	mustCreate(t, s, "bob")
}

func TestCanceledContext(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.CreateAccount(cctx, "bob", nil); err == nil {
		t.Error("CreateAccount with canceled context succeeded")
	}
	if _, err := s.OfflineMessages(cctx, "alice"); err == nil {
		t.Error("OfflineMessages with canceled context succeeded")
	}
	if ok, _ := s.AccountExists(ctx, "bob"); ok {
		t.Error("bob created despite canceled context")
	}
	// The single writer connection is still usable.
	mustCreate(t, s, "carol")
}

func TestSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Setting(ctx, SettingDomain); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unset setting: %v", err)
	}
	if err := s.SetSetting(ctx, SettingDomain, "a.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSetting(ctx, SettingDomain, "b.example"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.Setting(ctx, SettingDomain); err != nil || v != "b.example" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
}

// startChild runs this test binary's test name in a child process with
// env added to its environment, and returns the process and its standard
// output line by line (the channel closes at its end). The child is killed
// when the test ends, if it is still running.
func startChild(t *testing.T, name, env string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, lines
}
