package store

import (
	"fmt"
	"testing"
	"time"
)

func TestWebSessions(t *testing.T) {
	s, path := openTest(t)
	mustCreate(t, s, "alice", "bob")
	ws := WebSession{Digest: "d1", Username: "alice", Wizard: true, Created: t0, Expires: t0.Add(time.Hour)}
	wantNoErr(t, "create", s.CreateWebSession(ctx, ws, 10))
	wantErr(t, "same digest", s.CreateWebSession(ctx, ws, 10), ErrExists)
	wantErr(t, "no account", s.CreateWebSession(ctx, WebSession{Digest: "dx", Username: "nobody", Created: t0, Expires: t0.Add(time.Hour)}, 10), ErrNotFound)
	if err := s.CreateWebSession(ctx, WebSession{Digest: "dy", Username: "alice", Created: t0, Expires: t0}, 10); err == nil {
		t.Fatal("expiry not after creation accepted")
	}
	wantNoErr(t, "close", s.Close())

	// A new process (reopened store) finds it, until it expires.
	s = openAt(t, path)
	got, err := s.WebSessionByDigest(ctx, "d1", t0.Add(time.Minute))
	wantNoErr(t, "lookup", err)
	if got.Username != "alice" || !got.Wizard || !got.Created.Equal(t0) || !got.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("lookup = %+v", got)
	}
	_, err = s.WebSessionByDigest(ctx, "d1", t0.Add(time.Hour))
	wantErr(t, "expired", err, ErrNotFound)
	_, err = s.WebSessionByDigest(ctx, "nope", t0)
	wantErr(t, "unknown", err, ErrNotFound)

	// Pruning removes only expired ones.
	wantNoErr(t, "create 2", s.CreateWebSession(ctx, WebSession{Digest: "d2", Username: "bob", Created: t0, Expires: t0.Add(3 * time.Hour)}, 10))
	n, err := s.PruneWebSessions(ctx, t0.Add(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("prune = %d, %v", n, err)
	}
	if _, err := s.WebSessionByDigest(ctx, "d2", t0); err != nil {
		t.Fatalf("prune removed a valid session: %v", err)
	}

	// Logout of one, then of every session of a user.
	wantNoErr(t, "create 3", s.CreateWebSession(ctx, WebSession{Digest: "d3", Username: "bob", Created: t0, Expires: t0.Add(3 * time.Hour)}, 10))
	wantNoErr(t, "delete one", s.DeleteWebSession(ctx, "d2"))
	wantNoErr(t, "delete none", s.DeleteWebSession(ctx, "d2"))
	if _, err := s.WebSessionByDigest(ctx, "d3", t0); err != nil {
		t.Fatalf("deleting d2 removed d3: %v", err)
	}
	if n, err := s.DeleteWebSessions(ctx, "bob"); err != nil || n != 1 {
		t.Fatalf("delete all of bob = %d, %v", n, err)
	}
	_, err = s.WebSessionByDigest(ctx, "d3", t0)
	wantErr(t, "after delete all", err, ErrNotFound)
}

func TestWebSessionsCascadeAndBound(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	for i := range 5 {
		ws := WebSession{Digest: fmt.Sprint("a", i), Username: "alice", Created: t0, Expires: t0.Add(time.Duration(i+1) * time.Hour)}
		wantNoErr(t, "create", s.CreateWebSession(ctx, ws, 3))
	}
	wantNoErr(t, "create bob", s.CreateWebSession(ctx, WebSession{Digest: "b", Username: "bob", Created: t0, Expires: t0.Add(time.Minute)}, 3))
	// alice keeps her 3 latest sessions; bob's is untouched.
	for i, want := range []bool{false, false, true, true, true} {
		_, err := s.WebSessionByDigest(ctx, fmt.Sprint("a", i), t0)
		if (err == nil) != want {
			t.Errorf("session a%d: %v, want kept=%v", i, err, want)
		}
	}
	if _, err := s.WebSessionByDigest(ctx, "b", t0); err != nil {
		t.Fatalf("bob's session: %v", err)
	}
	// Creating a session drops the expired ones of everyone.
	wantNoErr(t, "create late", s.CreateWebSession(ctx, WebSession{Digest: "late", Username: "alice", Created: t0.Add(time.Hour), Expires: t0.Add(9 * time.Hour)}, 0))
	var n int
	wantNoErr(t, "count", s.r.QueryRowContext(ctx, `SELECT count(*) FROM web_sessions WHERE digest = 'b'`).Scan(&n))
	if n != 0 {
		t.Error("bob's expired session was kept")
	}
	// Deleting the account deletes its sessions.
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	wantNoErr(t, "count", s.r.QueryRowContext(ctx, `SELECT count(*) FROM web_sessions`).Scan(&n))
	if n != 0 {
		t.Errorf("%d sessions left after the account was deleted", n)
	}
}

func TestInitSetting(t *testing.T) {
	s, _ := openTest(t)
	v, err := s.InitSetting(ctx, "k", "first")
	if err != nil || v != "first" {
		t.Fatalf("InitSetting = %q, %v", v, err)
	}
	v, err = s.InitSetting(ctx, "k", "second")
	if err != nil || v != "first" {
		t.Fatalf("second InitSetting = %q, %v", v, err)
	}
	if v, _ := s.Setting(ctx, "k"); v != "first" {
		t.Fatalf("Setting = %q", v)
	}
}

func TestSetRoleKeepAdmin(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	wantNoErr(t, "alice admin", s.SetRole(ctx, "alice", RoleAdmin))
	// The only administrator stays one.
	_, err := s.SetRoleKeepAdmin(ctx, "alice", RoleNormal)
	wantErr(t, "demote last", err, ErrLastAdmin)
	if r, _ := s.Role(ctx, "alice"); r != RoleAdmin {
		t.Fatalf("alice's role = %q after a refused demotion", r)
	}
	old, err := s.SetRoleKeepAdmin(ctx, "bob", RoleAdmin)
	if err != nil || old != RoleNormal {
		t.Fatalf("promote bob = %q, %v", old, err)
	}
	if n, err := s.CountAdmins(ctx); err != nil || n != 2 {
		t.Fatalf("CountAdmins = %d, %v", n, err)
	}
	// An administrator marked for deletion does not count.
	wantNoErr(t, "mark bob", s.MarkAccountDeletionKeepAdmin(ctx, "bob", "alice", t0, t0.Add(time.Hour)))
	if n, err := s.CountAdmins(ctx); err != nil || n != 1 {
		t.Fatalf("CountAdmins with bob marked = %d, %v", n, err)
	}
	_, err = s.SetRoleKeepAdmin(ctx, "alice", RoleLimited)
	wantErr(t, "demote alice with bob marked", err, ErrLastAdmin)
	wantNoErr(t, "unmark bob", s.CancelAccountDeletion(ctx, "bob"))
	old, err = s.SetRoleKeepAdmin(ctx, "alice", RoleLimited)
	if err != nil || old != RoleAdmin {
		t.Fatalf("demote alice = %q, %v", old, err)
	}
	if r, _ := s.Role(ctx, "alice"); r != RoleLimited {
		t.Fatalf("alice's role = %q", r)
	}
	_, err = s.SetRoleKeepAdmin(ctx, "nobody", RoleNormal)
	wantErr(t, "no account", err, ErrNotFound)
	if _, err := s.SetRoleKeepAdmin(ctx, "alice", "owner"); err == nil {
		t.Fatal("unknown role accepted")
	}
	// Keeping the last administrator's role is no demotion.
	if _, err := s.SetRoleKeepAdmin(ctx, "bob", RoleAdmin); err != nil {
		t.Fatalf("bob stays admin: %v", err)
	}
}
