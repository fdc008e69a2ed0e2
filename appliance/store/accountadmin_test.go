package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAccountDeletionMarks(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	wantNoErr(t, "PutFASTToken", s.PutFASTToken(ctx, "alice", FASTToken{Agent: "a", Mechanism: "HT-SHA-256-NONE", Slot: FASTSlotNew,
		Key: make([]byte, 32), Expires: t0.Add(time.Hour)}, 10))
	wantNoErr(t, "CreatePasswordReset", s.CreatePasswordReset(ctx, PasswordReset{Digest: "d1", Username: "alice", Created: t0, Expires: t0.Add(time.Hour)}))

	wantErr(t, "mark unknown", s.MarkAccountDeletionKeepAdmin(ctx, "nobody", "root", t0, t0), ErrNotFound)
	wantNoErr(t, "mark", s.MarkAccountDeletionKeepAdmin(ctx, "alice", "root", t0, t0.Add(48*time.Hour)))
	wantErr(t, "mark twice", s.MarkAccountDeletionKeepAdmin(ctx, "alice", "root", t0, t0), ErrExists)
	// Locked: no credentials, no FAST tokens, no reset links; data stays.
	wantErr(t, "credentials while marked", func() error { _, err := s.Credentials(ctx, "alice", "SHA-256"); return err }(), ErrNotFound)
	if toks, _ := s.FASTTokens(ctx, "alice", "a", "HT-SHA-256-NONE"); len(toks) != 0 {
		t.Fatalf("FAST tokens survived the lock: %v", toks)
	}
	wantErr(t, "reset link while marked", func() error { _, err := s.PasswordResetByDigest(ctx, "d1"); return err }(), ErrNotFound)
	wantErr(t, "new reset link while marked", s.CreatePasswordReset(ctx, PasswordReset{Digest: "d2", Username: "alice", Created: t0, Expires: t0.Add(time.Hour)}), ErrNotFound)
	if ok, _ := s.AccountExists(ctx, "alice"); !ok {
		t.Fatal("the account is gone before its time")
	}

	dels, err := s.AccountDeletions(ctx)
	if err != nil || len(dels) != 1 || dels[0].Username != "alice" || dels[0].RequestedBy != "root" || !dels[0].Due.Equal(t0.Add(48*time.Hour)) {
		t.Fatalf("AccountDeletions: %+v %v", dels, err)
	}
	if due, _ := s.DueAccountDeletions(ctx, t0.Add(47*time.Hour)); len(due) != 0 {
		t.Fatalf("due too early: %v", due)
	}
	if due, _ := s.DueAccountDeletions(ctx, t0.Add(48*time.Hour)); len(due) != 1 {
		t.Fatalf("not due: %v", due)
	}

	// Cancelling brings the same keys back.
	wantNoErr(t, "cancel", s.CancelAccountDeletion(ctx, "alice"))
	wantErr(t, "cancel twice", s.CancelAccountDeletion(ctx, "alice"), ErrNotFound)
	k, err := s.Credentials(ctx, "alice", "SHA-256")
	if err != nil || string(k.Salt) != "salt-alice" {
		t.Fatalf("restored key %+v %v", k, err)
	}
	if dels, _ := s.AccountDeletions(ctx); len(dels) != 0 {
		t.Fatalf("still marked: %v", dels)
	}

	// A password set while marked wins over the held keys.
	wantNoErr(t, "mark bob", s.MarkAccountDeletionKeepAdmin(ctx, "bob", "bob", t0, t0))
	wantNoErr(t, "SetCredentials", s.SetCredentials(ctx, "bob", []ScramKey{key("SHA-256", "new")}))
	wantNoErr(t, "cancel bob", s.CancelAccountDeletion(ctx, "bob"))
	if k, _ := s.Credentials(ctx, "bob", "SHA-256"); string(k.Salt) != "salt-new" {
		t.Fatalf("bob's new password lost: %+v", k)
	}
	if _, err := s.Credentials(ctx, "bob", "SHA-1"); err == nil {
		t.Fatal("held SHA-1 key came back beside the new password")
	}
	// Deleting a marked account leaves nothing behind.
	wantNoErr(t, "mark bob again", s.MarkAccountDeletionKeepAdmin(ctx, "bob", "root", t0, t0))
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "bob"))
	var n int
	wantNoErr(t, "count held", s.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM held_scram_keys) + (SELECT count(*) FROM account_deletions)`).Scan(&n))
	if n != 0 {
		t.Fatalf("%d rows left", n)
	}
}

func TestPasswordResets(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	wantErr(t, "unknown account", s.CreatePasswordReset(ctx, PasswordReset{Digest: "x", Username: "nobody", Created: t0, Expires: t0.Add(time.Hour)}), ErrNotFound)
	if err := s.CreatePasswordReset(ctx, PasswordReset{Digest: "x", Username: "alice", Created: t0, Expires: t0}); err == nil {
		t.Fatal("an expiry not after creation was accepted")
	}
	wantNoErr(t, "create", s.CreatePasswordReset(ctx, PasswordReset{Digest: "d1", Username: "alice", Created: t0, Expires: t0.Add(time.Hour), CreatedBy: "root"}))
	wantNoErr(t, "create 2", s.CreatePasswordReset(ctx, PasswordReset{Digest: "d2", Username: "alice", Created: t0, Expires: t0.Add(2 * time.Hour)}))
	wantErr(t, "duplicate digest", s.CreatePasswordReset(ctx, PasswordReset{Digest: "d1", Username: "alice", Created: t0, Expires: t0.Add(time.Hour)}), ErrExists)
	r, err := s.PasswordResetByDigest(ctx, "d1")
	if err != nil || r.Username != "alice" || r.CreatedBy != "root" || !r.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("lookup %+v %v", r, err)
	}
	newKeys := []ScramKey{key("SHA-256", "reset")}
	if _, err := s.UsePasswordReset(ctx, "d1", t0.Add(time.Hour), newKeys); err == nil {
		t.Fatal("an expired link was used")
	}
	user, err := s.UsePasswordReset(ctx, "d1", t0.Add(time.Minute), newKeys)
	if err != nil || user != "alice" {
		t.Fatalf("use: %q %v", user, err)
	}
	if k, _ := s.Credentials(ctx, "alice", "SHA-256"); string(k.Salt) != "salt-reset" {
		t.Fatalf("password not set: %+v", k)
	}
	// One use spends every link of the account.
	if _, err := s.UsePasswordReset(ctx, "d2", t0.Add(time.Minute), newKeys); err == nil {
		t.Fatal("a second link still worked")
	}
	wantNoErr(t, "create 3", s.CreatePasswordReset(ctx, PasswordReset{Digest: "d3", Username: "alice", Created: t0, Expires: t0.Add(time.Hour)}))
	if n, err := s.PrunePasswordResets(ctx, t0.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
}

func TestSnapshotAndPrivateXMLItems(t *testing.T) {
	s, _ := openTest(t)
	populate(t, s, "alice")
	wantNoErr(t, "SetPrivateXML", s.SetPrivateXML(ctx, "alice", "a:ns", []byte("<y xmlns='a:ns'/>")))
	items, err := s.PrivateXMLItems(ctx, "alice")
	if err != nil || len(items) != 2 || string(items[0]) != "<y xmlns='a:ns'/>" {
		t.Fatalf("PrivateXMLItems: %q %v", items, err)
	}
	if n, err := s.AccountCount(ctx); err != nil || n != 1 {
		t.Fatalf("AccountCount: %d %v", n, err)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	wantNoErr(t, "Snapshot", s.Snapshot(ctx, path))
	if err := s.Snapshot(ctx, path); err == nil {
		t.Fatal("Snapshot overwrote an existing file")
	}
	c := openAt(t, path)
	if ok, _ := c.AccountExists(ctx, "alice"); !ok {
		t.Fatal("the snapshot lacks alice")
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("snapshot file: %v", err)
	}
}
