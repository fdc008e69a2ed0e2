package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// appendN appends n entries to user's archive, alternating between two
// contacts, one second apart starting at t0, and returns them as stored.
func appendN(t *testing.T, s *Store, user string, n int) []ArchiveEntry {
	t.Helper()
	out := make([]ArchiveEntry, 0, n)
	for i := range n {
		e := ArchiveEntry{
			With:         []string{"c@x", "d@x"}[i%2],
			WithResource: []string{"r1", "r2", ""}[i%3],
			Outgoing:     i%4 == 0,
			Stamp:        t0.Add(time.Duration(i) * time.Second),
			Stanza:       fmt.Appendf(nil, "<message><body>%s %d</body></message>", user, i),
		}
		got, err := s.AppendArchive(ctx, user, e)
		if err != nil {
			t.Fatalf("AppendArchive %d: %v", i, err)
		}
		out = append(out, got)
	}
	return out
}

func ids(es []ArchiveEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func query(t *testing.T, s *Store, user string, q ArchiveQuery) ArchivePage {
	t.Helper()
	p, err := s.QueryArchive(ctx, user, q)
	if err != nil {
		t.Fatalf("QueryArchive(%+v): %v", q, err)
	}
	return p
}

func TestArchiveAppend(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	stamp := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	e, err := s.AppendArchive(ctx, "alice", ArchiveEntry{With: "bob@x", WithResource: "phone", Outgoing: true,
		Stamp: stamp, Stanza: []byte("<message/>")})
	wantNoErr(t, "AppendArchive", err)
	if len(e.ID) != 22 || strings.ContainsAny(e.ID, "+/=") || e.Seq <= 0 {
		t.Errorf("generated ID %q, Seq %d", e.ID, e.Seq)
	}
	if want := stamp.Truncate(time.Millisecond).UTC(); !e.Stamp.Equal(want) || e.Stamp.Location() != time.UTC {
		t.Errorf("Stamp = %v, want %v", e.Stamp, want)
	}
	p := query(t, s, "alice", ArchiveQuery{Max: 10})
	if len(p.Entries) != 1 || !reflect.DeepEqual(p.Entries[0], e) {
		t.Fatalf("stored %+v, want %+v", p.Entries, e)
	}
	// Caller-chosen IDs are unique per archive, not across archives.
	e2, err := s.AppendArchive(ctx, "alice", ArchiveEntry{ID: "fixed", With: "bob@x", Stamp: stamp})
	wantNoErr(t, "AppendArchive fixed id", err)
	if e2.ID != "fixed" || e2.Seq <= e.Seq || e2.Stanza == nil {
		t.Errorf("fixed entry %+v", e2)
	}
	_, err = s.AppendArchive(ctx, "alice", ArchiveEntry{ID: "fixed", With: "bob@x", Stamp: stamp})
	wantErr(t, "duplicate id", err, ErrExists)
	_, err = s.AppendArchive(ctx, "bob", ArchiveEntry{ID: "fixed", With: "alice@x", Stamp: stamp})
	wantNoErr(t, "same id in another archive", err)
	_, err = s.AppendArchive(ctx, "nobody", ArchiveEntry{With: "bob@x", Stamp: stamp})
	wantErr(t, "missing account", err, ErrNotFound)
	if _, err = s.AppendArchive(ctx, "alice", ArchiveEntry{Stamp: stamp}); err == nil {
		t.Error("empty With accepted")
	}
	_, err = s.QueryArchive(ctx, "nobody", ArchiveQuery{})
	wantErr(t, "query missing account", err, ErrNotFound)

	// Generated IDs do not repeat.
	seen := map[string]bool{}
	for _, e := range appendN(t, s, "bob", 200) {
		if seen[e.ID] {
			t.Fatalf("duplicate generated id %q", e.ID)
		}
		seen[e.ID] = true
	}
}

func TestArchivePaging(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	all := appendN(t, s, "alice", 103)
	appendN(t, s, "bob", 7) // interleaved archives must not leak

	// Forward with After.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p := query(t, s, "alice", ArchiveQuery{After: after, Max: 10})
		if p.Count != 103 {
			t.Fatalf("count %d", p.Count)
		}
		if len(p.Entries) > 0 && p.FirstIndex != len(got) {
			t.Fatalf("page %d: first index %d, want %d", pages, p.FirstIndex, len(got))
		}
		got = append(got, ids(p.Entries)...)
		if p.Complete {
			if pages != 10 || len(p.Entries) != 3 {
				t.Fatalf("complete after %d pages, last has %d", pages+1, len(p.Entries))
			}
			break
		}
		after = p.Entries[len(p.Entries)-1].ID
	}
	if !reflect.DeepEqual(got, ids(all)) {
		t.Fatal("forward paging lost or reordered entries")
	}

	// Backward from the last page.
	got = nil
	p := query(t, s, "alice", ArchiveQuery{Last: true, Max: 10})
	for {
		if p.FirstIndex != 103-len(got)-len(p.Entries) {
			t.Fatalf("backward first index %d", p.FirstIndex)
		}
		got = append(ids(p.Entries), got...)
		if p.Complete {
			break
		}
		p = query(t, s, "alice", ArchiveQuery{Before: p.Entries[0].ID, Max: 10})
	}
	if !reflect.DeepEqual(got, ids(all)) {
		t.Fatal("backward paging lost or reordered entries")
	}

	// Exactly filling the last page is complete; Max 0 only counts.
	if p := query(t, s, "alice", ArchiveQuery{After: all[92].ID, Max: 10}); !p.Complete || len(p.Entries) != 10 {
		t.Errorf("exact last page: complete %v, %d entries", p.Complete, len(p.Entries))
	}
	if p := query(t, s, "alice", ArchiveQuery{}); p.Complete || p.Entries != nil || p.Count != 103 {
		t.Errorf("max 0: %+v", p)
	}
	if p := query(t, s, "alice", ArchiveQuery{Index: 100, Max: 10}); !reflect.DeepEqual(ids(p.Entries), ids(all[100:])) ||
		p.FirstIndex != 100 || !p.Complete {
		t.Errorf("index 100: %+v", p)
	}
	// Before and After together: the last page between both.
	if p := query(t, s, "alice", ArchiveQuery{After: all[10].ID, Before: all[30].ID, Max: 5}); !reflect.DeepEqual(ids(p.Entries), ids(all[25:30])) || p.Complete {
		t.Errorf("between: %v", ids(p.Entries))
	}
	// Unknown paging ids; ids of another archive are unknown too.
	bobs := query(t, s, "bob", ArchiveQuery{Max: 1}).Entries[0].ID
	for _, q := range []ArchiveQuery{{After: "nope"}, {Before: "nope"}, {AfterID: "nope"}, {BeforeID: bobs},
		{IDs: []string{all[0].ID, "nope"}}} {
		_, err := s.QueryArchive(ctx, "alice", q)
		wantErr(t, fmt.Sprintf("query %+v", q), err, ErrNotFound)
	}
	// Empty archive.
	mustCreate(t, s, "carol")
	if p := query(t, s, "carol", ArchiveQuery{Last: true, Max: 10}); !p.Complete || p.Count != 0 || p.Entries != nil {
		t.Errorf("empty archive: %+v", p)
	}
}

func TestArchiveFilters(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	all := appendN(t, s, "alice", 30)
	filter := func(keep func(i int, e ArchiveEntry) bool) []string {
		var out []string
		for i, e := range all {
			if keep(i, e) {
				out = append(out, e.ID)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    ArchiveQuery
		want []string
	}{
		{"with bare", ArchiveQuery{With: "c@x"}, filter(func(_ int, e ArchiveEntry) bool { return e.With == "c@x" })},
		{"with full", ArchiveQuery{With: "c@x", WithResource: "r2"},
			filter(func(_ int, e ArchiveEntry) bool { return e.With == "c@x" && e.WithResource == "r2" })},
		{"with unknown", ArchiveQuery{With: "z@x"}, nil},
		{"start end inclusive", ArchiveQuery{Start: t0.Add(5 * time.Second), End: t0.Add(9 * time.Second)}, ids(all[5:10])},
		{"start rounds up", ArchiveQuery{Start: t0.Add(5*time.Second + time.Microsecond)}, ids(all[6:])},
		{"end rounds down", ArchiveQuery{End: t0.Add(5*time.Second - time.Microsecond)}, ids(all[:5])},
		{"after-id before-id", ArchiveQuery{AfterID: all[3].ID, BeforeID: all[8].ID}, ids(all[4:8])},
		{"ids", ArchiveQuery{IDs: []string{all[7].ID, all[2].ID, all[7].ID}}, []string{all[2].ID, all[7].ID}},
		{"combined", ArchiveQuery{With: "d@x", Start: t0.Add(10 * time.Second), BeforeID: all[20].ID},
			filter(func(i int, e ArchiveEntry) bool { return e.With == "d@x" && i >= 10 && i < 20 })},
	} {
		tc.q.Max = 100
		p := query(t, s, "alice", tc.q)
		if !reflect.DeepEqual(ids(p.Entries), tc.want) || p.Count != len(tc.want) || !p.Complete {
			t.Errorf("%s: got %v (count %d), want %v", tc.name, ids(p.Entries), p.Count, tc.want)
		}
	}
	// Paging inside a filtered set: index and count are of the set.
	p := query(t, s, "alice", ArchiveQuery{With: "c@x", After: all[10].ID, Max: 2})
	if !reflect.DeepEqual(ids(p.Entries), []string{all[12].ID, all[14].ID}) || p.FirstIndex != 6 || p.Count != 15 {
		t.Errorf("filtered page: %v index %d count %d", ids(p.Entries), p.FirstIndex, p.Count)
	}
}

func TestArchiveQueryPlans(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	appendN(t, s, "alice", 5)
	plan := func(q ArchiveQuery) string {
		t.Helper()
		tx, err := s.r.BeginTx(ctx, nil)
		wantNoErr(t, "begin", err)
		defer tx.Rollback()
		where, args, err := userArchive.where(ctx, tx, "alice", q)
		wantNoErr(t, "where", err)
		rows, err := tx.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT seq FROM mam_messages WHERE `+where+` ORDER BY seq LIMIT 10`, args...)
		wantNoErr(t, "explain", err)
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, parent, notused int
			var detail string
			wantNoErr(t, "scan", rows.Scan(&id, &parent, &notused, &detail))
			b.WriteString(detail + "; ")
		}
		return b.String()
	}
	for _, tc := range []struct {
		q     ArchiveQuery
		index string
	}{
		{ArchiveQuery{}, "mam_messages_by_user"},
		{ArchiveQuery{Start: t0, End: t0.Add(time.Hour)}, "mam_messages_by_user"},
		{ArchiveQuery{With: "c@x", Start: t0}, "mam_messages_by_with"},
	} {
		if p := plan(tc.q); !strings.Contains(p, tc.index) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("plan for %+v: %s, want %s without a sort", tc.q, p, tc.index)
		}
	}
}

func TestArchivePrefs(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	p, err := s.ArchivePrefs(ctx, "alice")
	if err != nil || !reflect.DeepEqual(p, ArchivePrefs{}) {
		t.Fatalf("unset prefs: %+v, %v", p, err)
	}
	want := ArchivePrefs{Default: "roster", Always: []string{"b@x", "a@x/r"}, Never: []string{"z@x", "b@x"}}
	in := want
	in.Always = append(in.Always, "b@x")
	wantNoErr(t, "SetArchivePrefs", s.SetArchivePrefs(ctx, "alice", in))
	p, err = s.ArchivePrefs(ctx, "alice")
	if err != nil || !reflect.DeepEqual(p, want) {
		t.Fatalf("prefs = %+v, %v; want %+v", p, err, want)
	}
	wantNoErr(t, "SetArchivePrefs", s.SetArchivePrefs(ctx, "alice", ArchivePrefs{Default: "never"}))
	if p, _ = s.ArchivePrefs(ctx, "alice"); !reflect.DeepEqual(p, ArchivePrefs{Default: "never"}) {
		t.Errorf("replaced prefs = %+v", p)
	}
	for _, bad := range []ArchivePrefs{{}, {Default: "sometimes"}, {Default: "always", Never: []string{""}}} {
		if err := s.SetArchivePrefs(ctx, "alice", bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("SetArchivePrefs(%+v) = %v", bad, err)
		}
	}
	wantErr(t, "set missing account", s.SetArchivePrefs(ctx, "nobody", ArchivePrefs{Default: "always"}), ErrNotFound)
	_, err = s.ArchivePrefs(ctx, "nobody")
	wantErr(t, "get missing account", err, ErrNotFound)
}

func TestArchiveRetention(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	a := appendN(t, s, "alice", 1234)
	b := appendN(t, s, "bob", 50)
	cutoff := t0.Add(1000 * time.Second)
	n, err := s.PruneArchive(ctx, cutoff, 100)
	if err != nil || n != 1000+50 {
		t.Fatalf("PruneArchive = %d, %v; want 1050", n, err)
	}
	if p := query(t, s, "alice", ArchiveQuery{Max: 1000}); !reflect.DeepEqual(ids(p.Entries), ids(a[1000:])) {
		t.Errorf("kept %d entries, want the newest 234", len(p.Entries))
	}
	if p := query(t, s, "bob", ArchiveQuery{}); p.Count != 0 {
		t.Errorf("bob kept %d", p.Count)
	}
	_ = b
	if n, err := s.PruneArchive(ctx, cutoff, 0); n != 0 || err != nil {
		t.Errorf("second prune = %d, %v", n, err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.PruneArchive(canceled, t0.Add(time.Hour), 10); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled prune: %v", err)
	}

	// DeleteArchive empties one archive, keeps the prefs and other archives.
	wantNoErr(t, "SetArchivePrefs", s.SetArchivePrefs(ctx, "alice", ArchivePrefs{Default: "roster"}))
	appendN(t, s, "bob", 3)
	if n, err := s.DeleteArchive(ctx, "alice", 50); n != 234 || err != nil {
		t.Errorf("DeleteArchive = %d, %v", n, err)
	}
	if p := query(t, s, "alice", ArchiveQuery{}); p.Count != 0 {
		t.Errorf("alice kept %d", p.Count)
	}
	if p := query(t, s, "bob", ArchiveQuery{}); p.Count != 3 {
		t.Errorf("bob has %d, want 3", p.Count)
	}
	if p, _ := s.ArchivePrefs(ctx, "alice"); p.Default != "roster" {
		t.Errorf("prefs lost: %+v", p)
	}
	if n, err := s.DeleteArchive(ctx, "nobody", 0); n != 0 || err != nil {
		t.Errorf("DeleteArchive(nobody) = %d, %v", n, err)
	}
	// Ids are not reused after deletion: new entries sort after the old ones.
	e := appendN(t, s, "alice", 1)[0]
	if e.Seq <= a[len(a)-1].Seq {
		t.Errorf("seq reused: %d <= %d", e.Seq, a[len(a)-1].Seq)
	}
}

func TestArchiveDeleteAccountCascades(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	appendN(t, s, "alice", 5)
	appendN(t, s, "bob", 5)
	for _, u := range []string{"alice", "bob"} {
		wantNoErr(t, "SetArchivePrefs", s.SetArchivePrefs(ctx, u, ArchivePrefs{Default: "never", Always: []string{"c@x"}}))
	}
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	for _, tbl := range []string{"mam_messages", "mam_prefs", "mam_prefs_jids"} {
		var mine, bobs int
		wantNoErr(t, tbl, s.r.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE username = 'alice'),
			count(*) FILTER (WHERE username = 'bob') FROM `+tbl).Scan(&mine, &bobs))
		if mine != 0 || bobs == 0 {
			t.Errorf("%s: alice %d rows, bob %d", tbl, mine, bobs)
		}
	}
	mustCreate(t, s, "alice")
	if p := query(t, s, "alice", ArchiveQuery{}); p.Count != 0 {
		t.Error("archive survived account deletion")
	}
	if p, _ := s.ArchivePrefs(ctx, "alice"); p.Default != "" {
		t.Error("prefs survived account deletion")
	}
}
