package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestMarkAccountDeletionKeepAdmin(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob", "kid")
	wantNoErr(t, "alice admin", s.SetRole(ctx, "alice", RoleAdmin))
	due := t0.Add(48 * time.Hour)

	wantErr(t, "mark the last admin", s.MarkAccountDeletionKeepAdmin(ctx, "alice", "cli", t0, due), ErrLastAdmin)
	if dels, _ := s.AccountDeletions(ctx); len(dels) != 0 {
		t.Fatalf("refused mark left %v", dels)
	}
	if _, err := s.Credentials(ctx, "alice", "SHA-256"); err != nil {
		t.Fatalf("refused mark locked alice: %v", err)
	}
	wantErr(t, "mark unknown", s.MarkAccountDeletionKeepAdmin(ctx, "nobody", "cli", t0, due), ErrNotFound)
	// A non-administrator may always go.
	wantNoErr(t, "mark kid", s.MarkAccountDeletionKeepAdmin(ctx, "kid", "alice", t0, due))
	wantErr(t, "mark kid twice", s.MarkAccountDeletionKeepAdmin(ctx, "kid", "alice", t0, due), ErrExists)
	wantErr(t, "credentials of marked kid", func() error { _, err := s.Credentials(ctx, "kid", "SHA-256"); return err }(), ErrNotFound)

	// With a second administrator, one of the two may go; then the other
	// is the last one.
	wantNoErr(t, "bob admin", s.SetRole(ctx, "bob", RoleAdmin))
	wantNoErr(t, "mark bob", s.MarkAccountDeletionKeepAdmin(ctx, "bob", "alice", t0, due))
	wantErr(t, "mark alice with bob marked", s.MarkAccountDeletionKeepAdmin(ctx, "alice", "bob", t0, due), ErrLastAdmin)
	// A marked administrator can be marked again only as ErrExists, not
	// ErrLastAdmin (it no longer counts).
	wantErr(t, "mark bob twice", s.MarkAccountDeletionKeepAdmin(ctx, "bob", "alice", t0, due), ErrExists)
}

// Two administrators deleting each other at the same instant: exactly one
// deletion succeeds, the other is refused as the last administrator.
func TestMarkAccountDeletionKeepAdminConcurrent(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	wantNoErr(t, "alice admin", s.SetRole(ctx, "alice", RoleAdmin))
	wantNoErr(t, "bob admin", s.SetRole(ctx, "bob", RoleAdmin))
	for round := range 20 {
		start := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, user := range []string{"alice", "bob"} {
			wg.Go(func() {
				<-start
				errs[i] = s.MarkAccountDeletionKeepAdmin(ctx, user, "other", t0, t0.Add(time.Hour))
			})
		}
		close(start)
		wg.Wait()
		ok, last := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrLastAdmin):
				last++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ok != 1 || last != 1 {
			t.Fatalf("round %d: errors %v, want exactly one success and one ErrLastAdmin", round, errs)
		}
		if n, err := s.CountAdmins(ctx); err != nil || n != 1 {
			t.Fatalf("round %d: CountAdmins = %d, %v", round, n, err)
		}
		dels, err := s.AccountDeletions(ctx)
		if err != nil || len(dels) != 1 {
			t.Fatalf("round %d: deletions %v, %v", round, dels, err)
		}
		wantNoErr(t, "cancel", s.CancelAccountDeletion(ctx, dels[0].Username))
	}
}
