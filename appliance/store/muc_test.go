package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestMUCRooms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveMUCRoom(ctx, MUCRoom{Name: "x"}); err == nil {
		t.Fatal("room without configuration saved")
	}
	if err := s.SetMUCAffiliations(ctx, "none", []MUCAffiliation{{JID: "a@b", Affiliation: "member"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("affiliations of an unknown room: %v", err)
	}
	r, err := s.SaveMUCRoom(ctx, MUCRoom{Name: "home", Config: []byte(`{"a":1}`)})
	if err != nil || r.Created.IsZero() {
		t.Fatalf("SaveMUCRoom = %+v, %v", r, err)
	}
	r.Subject, r.SubjectNick, r.SubjectStamp, r.VCard = "hi", "Alice", t0, []byte("<vCard xmlns='vcard-temp'/>")
	if _, err := s.SaveMUCRoom(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveMUCRoom(ctx, MUCRoom{Name: "attic", Config: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMUCAffiliations(ctx, "home", []MUCAffiliation{
		{JID: "alice@x", Affiliation: "owner"}, {JID: "bob@x", Affiliation: "member", Reason: "family"},
		{JID: "eve@x", Affiliation: "outcast"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMUCAffiliations(ctx, "home", []MUCAffiliation{{JID: "eve@x", Affiliation: "none"}, {JID: "x", Affiliation: "king"}}); err == nil {
		t.Fatal("unknown affiliation accepted")
	}
	if err := s.SetMUCAffiliations(ctx, "home", []MUCAffiliation{{JID: "eve@x", Affiliation: "none"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Everything survives reopening.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rooms, err := s.MUCRooms(ctx)
	if err != nil || len(rooms) != 2 || rooms[0].Name != "attic" || rooms[1].Name != "home" {
		t.Fatalf("MUCRooms = %+v, %v", rooms, err)
	}
	h := rooms[1]
	if string(h.Config) != `{"a":1}` || h.Subject != "hi" || h.SubjectNick != "Alice" || !h.SubjectStamp.Equal(t0) ||
		string(h.VCard) != "<vCard xmlns='vcard-temp'/>" || !h.Created.Equal(r.Created) || rooms[0].VCard != nil {
		t.Fatalf("stored room: %+v", rooms)
	}
	affs, err := s.MUCAffiliations(ctx, "home")
	want := []MUCAffiliation{{JID: "alice@x", Affiliation: "owner"}, {JID: "bob@x", Affiliation: "member", Reason: "family"}}
	if err != nil || !reflect.DeepEqual(affs, want) {
		t.Fatalf("MUCAffiliations = %+v, %v", affs, err)
	}

	// Archive: append, page, filter, prune, cascade on deletion.
	var ids []string
	for i := range 6 {
		e, err := s.AppendMUCArchive(ctx, "home", ArchiveEntry{
			With: "alice@x", WithResource: []string{"Alice", "Bob"}[i%2],
			Stamp: t0.Add(time.Duration(i) * time.Minute), Stanza: fmt.Appendf(nil, "<message>%d</message>", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	if _, err := s.AppendMUCArchive(ctx, "home", ArchiveEntry{ID: ids[0], WithResource: "x"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := s.AppendMUCArchive(ctx, "nowhere", ArchiveEntry{WithResource: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("append to an unknown room: %v", err)
	}
	p, err := s.QueryMUCArchive(ctx, "home", ArchiveQuery{Max: 2, After: ids[1]})
	if err != nil || len(p.Entries) != 2 || p.Entries[0].ID != ids[2] || p.Count != 6 || p.FirstIndex != 2 || p.Complete {
		t.Fatalf("page after: %+v, %v", p, err)
	}
	p, err = s.QueryMUCArchive(ctx, "home", ArchiveQuery{Max: 2, Last: true, WithResource: "Bob"})
	if err != nil || len(p.Entries) != 2 || p.Entries[1].ID != ids[5] || p.Count != 3 || p.Entries[0].WithResource != "Bob" ||
		p.Entries[0].With != "alice@x" {
		t.Fatalf("last page of Bob: %+v, %v", p, err)
	}
	p, err = s.QueryMUCArchive(ctx, "home", ArchiveQuery{Max: 10, Start: t0.Add(2 * time.Minute), End: t0.Add(3 * time.Minute)})
	if err != nil || len(p.Entries) != 2 || p.Entries[0].ID != ids[2] {
		t.Fatalf("time range: %+v, %v", p, err)
	}
	if _, err := s.QueryMUCArchive(ctx, "home", ArchiveQuery{After: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown after: %v", err)
	}
	if _, err := s.QueryMUCArchive(ctx, "attic", ArchiveQuery{IDs: []string{ids[0]}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another room's id: %v", err)
	}
	if n, err := s.PruneMUCArchive(ctx, t0.Add(2*time.Minute), 1); err != nil || n != 2 {
		t.Fatalf("PruneMUCArchive = %d, %v", n, err)
	}
	if err := s.DeleteMUCRoom(ctx, "home"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.QueryMUCArchive(ctx, "home", ArchiveQuery{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("archive of a deleted room: %v", err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM muc_messages`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("messages left after deleting the room: %d, %v", n, err)
	}
	if err := s.DeleteMUCRoom(ctx, "home"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
}

// TestDeleteAccountForgetsAffiliations: deleting an account removes its
// group chat affiliations under the data directory's domain, and only
// those (another domain's account of the same name keeps its own).
func TestDeleteAccountForgetsAffiliations(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.SetSetting(ctx, SettingDomain, "example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, "bob", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveMUCRoom(ctx, MUCRoom{Name: "home", Config: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMUCAffiliations(ctx, "home", []MUCAffiliation{
		{JID: "bob@example.org", Affiliation: "owner"}, {JID: "bob@elsewhere.net", Affiliation: "member"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	affs, err := s.MUCAffiliations(ctx, "home")
	if err != nil || len(affs) != 1 || affs[0].JID != "bob@elsewhere.net" {
		t.Fatalf("affiliations after deleting bob: %+v, %v", affs, err)
	}
}
