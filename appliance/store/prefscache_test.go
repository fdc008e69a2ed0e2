package store

import (
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestArchivePrefsCache checks that preferences are answered from memory
// once read (a change by another Store on the same file is not seen, as
// documented), that this Store's own changes and account deletions drop
// the cached copy, and that callers get copies they may change.
func TestArchivePrefsCache(t *testing.T) {
	s, path := openTest(t)
	other := openAt(t, path)
	mustCreate(t, s, "alice")
	p1 := ArchivePrefs{Default: "roster", Always: []string{"a@x"}, Never: []string{"b@x"}}
	wantNoErr(t, "SetArchivePrefs", s.SetArchivePrefs(ctx, "alice", p1))
	got, err := s.ArchivePrefs(ctx, "alice")
	if err != nil || !reflect.DeepEqual(got, p1) {
		t.Fatalf("prefs = %+v, %v; want %+v", got, err, p1)
	}
	got.Always[0] = "changed@x"
	got.Never = append(got.Never, "more@x")

	// Written behind this Store's back: the cached copy answers.
	wantNoErr(t, "other SetArchivePrefs", other.SetArchivePrefs(ctx, "alice", ArchivePrefs{Default: "never"}))
	if got, err = s.ArchivePrefs(ctx, "alice"); err != nil || !reflect.DeepEqual(got, p1) {
		t.Fatalf("cached prefs = %+v, %v; want %+v unchanged", got, err, p1)
	}

	// This Store's own change is seen at once.
	p2 := ArchivePrefs{Default: "always", Never: []string{"c@x"}}
	wantNoErr(t, "SetArchivePrefs", s.SetArchivePrefs(ctx, "alice", p2))
	if got, err = s.ArchivePrefs(ctx, "alice"); err != nil || !reflect.DeepEqual(got, p2) {
		t.Fatalf("prefs after set = %+v, %v; want %+v", got, err, p2)
	}

	// A later account of the same name starts without preferences.
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	_, err = s.ArchivePrefs(ctx, "alice")
	wantErr(t, "prefs of deleted account", err, ErrNotFound)
	_, err = s.AppendArchive(ctx, "alice", ArchiveEntry{With: "b@x", Stamp: t0})
	wantErr(t, "append to deleted account", err, ErrNotFound)
	mustCreate(t, s, "alice")
	if got, err = s.ArchivePrefs(ctx, "alice"); err != nil || !reflect.DeepEqual(got, ArchivePrefs{}) {
		t.Fatalf("prefs of the new account = %+v, %v; want none", got, err)
	}
}

// TestArchivePrefsCacheConcurrent races reads against changes (for -race)
// and checks that the last change is what is read afterwards.
func TestArchivePrefsCacheConcurrent(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	modes := []string{"always", "never", "roster"}
	var wg sync.WaitGroup
	deadline := time.Now().Add(10 * time.Second)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; i < 50 && time.Now().Before(deadline); i++ {
				if g == 0 {
					if err := s.SetArchivePrefs(ctx, "alice", ArchivePrefs{Default: modes[i%3]}); err != nil {
						t.Errorf("SetArchivePrefs: %v", err)
						return
					}
				} else if _, err := s.ArchivePrefs(ctx, "alice"); err != nil {
					t.Errorf("ArchivePrefs: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantNoErr(t, "SetArchivePrefs", s.SetArchivePrefs(ctx, "alice", ArchivePrefs{Default: "roster"}))
	if got, err := s.ArchivePrefs(ctx, "alice"); err != nil || got.Default != "roster" {
		t.Fatalf("prefs = %+v, %v; want default roster", got, err)
	}
}

// A fill whose read started before a change committed is dropped, so a
// changed user's old preferences never come back from the cache.
func TestArchivePrefsCacheStaleFill(t *testing.T) {
	var c prefsCache
	gen := c.generation()
	c.forget("alice") // SetArchivePrefs commits while the read is in flight
	c.put("alice", ArchivePrefs{Default: "never"}, gen)
	if _, ok := c.get("alice"); ok {
		t.Fatal("stale fill after a change was cached")
	}
	c.put("alice", ArchivePrefs{Default: "roster"}, c.generation())
	if p, ok := c.get("alice"); !ok || p.Default != "roster" {
		t.Fatalf("current fill: %+v, %v", p, ok)
	}
}
