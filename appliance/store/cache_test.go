package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// countAccountQueries makes AccountExists count its database queries per
// username for the rest of the test.
func countAccountQueries(t *testing.T) func(username string) int {
	t.Helper()
	var mu sync.Mutex
	n := map[string]int{}
	accountQueryHook = func(u string) {
		mu.Lock()
		n[u]++
		mu.Unlock()
	}
	t.Cleanup(func() { accountQueryHook = nil })
	return func(u string) int {
		mu.Lock()
		defer mu.Unlock()
		return n[u]
	}
}

// exists calls AccountExists and fails the test on error.
func exists(t *testing.T, s *Store, user string) bool {
	t.Helper()
	ok, err := s.AccountExists(ctx, user)
	if err != nil {
		t.Fatalf("AccountExists(%q): %v", user, err)
	}
	return ok
}

// A positive answer is read once and then served from memory; accounts
// created through the Store (every creation path) are known without a
// query; a deleted account is forgotten at once.
func TestAccountExistsCache(t *testing.T) {
	s, path := openTest(t)
	other := openAt(t, path) // stands for another process (the CLI)
	queries := countAccountQueries(t)

	// Created elsewhere: the first lookup queries, later ones do not.
	mustCreate(t, other, "alice")
	for i := 0; i < 3; i++ {
		if !exists(t, s, "alice") {
			t.Fatalf("lookup %d: alice not found", i)
		}
	}
	if n := queries("alice"); n != 1 {
		t.Fatalf("alice: %d queries for 3 lookups, want 1", n)
	}

	// Created through this Store: no query at all.
	mustCreate(t, s, "bob")
	wantNoErr(t, "CreateFirstAdmin", s.CreateFirstAdmin(ctx, "root", []ScramKey{key("SHA-256", "r")}))
	now := time.Now()
	wantNoErr(t, "CreateInvite", s.CreateInvite(ctx, Invite{Token: "tok", Created: now,
		Expires: now.Add(time.Hour), Role: RoleNormal, MaxUses: 1}))
	_, err := s.RedeemInvite(ctx, "tok", "guest", []ScramKey{key("SHA-256", "g")}, func(Invite) error { return nil })
	wantNoErr(t, "RedeemInvite", err)
	for _, u := range []string{"bob", "root", "guest"} {
		if !exists(t, s, u) {
			t.Fatalf("%s not found after creation", u)
		}
		if n := queries(u); n != 0 {
			t.Fatalf("%s: %d queries after creation through this Store, want 0", u, n)
		}
	}

	// A creation that fails (name taken) must not be trusted either way;
	// a failed redemption (check refuses) creates nothing and caches nothing.
	_, err = s.RedeemInvite(ctx, "tok", "nobody", []ScramKey{key("SHA-256", "n")},
		func(Invite) error { return errors.New("refused") })
	if err == nil {
		t.Fatal("RedeemInvite with a refusing check succeeded")
	}
	if exists(t, s, "nobody") {
		t.Fatal("nobody exists after a refused redemption")
	}

	// Deleted: not found, from the database.
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	if exists(t, s, "alice") {
		t.Fatal("alice still exists after DeleteAccount")
	}
	if n := queries("alice"); n != 2 {
		t.Fatalf("alice: %d queries, want 2 (the answer after deletion must come from the database)", n)
	}
	mustCreate(t, s, "alice")
	if !exists(t, s, "alice") {
		t.Fatal("re-created alice not found")
	}
}

// A negative answer is never cached: an account created by another
// process after a lookup said "no" is found by the next lookup.
func TestAccountExistsNegativeNotCached(t *testing.T) {
	s, path := openTest(t)
	other := openAt(t, path)
	queries := countAccountQueries(t)
	for i := 0; i < 2; i++ {
		if exists(t, s, "carol") {
			t.Fatal("carol exists before creation")
		}
	}
	if n := queries("carol"); n != 2 {
		t.Fatalf("carol: %d queries for 2 negative lookups, want 2", n)
	}
	mustCreate(t, other, "carol")
	if !exists(t, s, "carol") {
		t.Fatal("carol, created by another Store on the same file, not found")
	}
}

// A fill whose lookup started before a deletion committed is dropped, so
// a deleted account never comes back from the cache.
func TestAccountCacheStaleFill(t *testing.T) {
	var c accountCache
	gen := c.generation()
	c.forget("dave") // a deletion commits while the lookup is in flight
	c.add("dave", gen)
	if c.has("dave") {
		t.Fatal("stale fill after a deletion was cached")
	}
	c.add("dave", c.generation())
	if !c.has("dave") {
		t.Fatal("current fill not cached")
	}
}

// A Store's cache holds only its own database's accounts.
func TestAccountCachePerStore(t *testing.T) {
	s1, _ := openTest(t)
	s2, _ := openTest(t)
	mustCreate(t, s1, "erin")
	if exists(t, s2, "erin") {
		t.Fatal("erin of another database found")
	}
}
