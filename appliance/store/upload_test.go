package store

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestUploads(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	id := func(c string) string { return strings.Repeat(c, 64) }
	mk := func(c, user string, size int64, created time.Time) Upload {
		return Upload{ID: id(c), Username: user, Filename: "f" + c + ".jpg", Size: size, ContentType: "image/jpeg", Created: created}
	}

	wantErr(t, "no account", s.CreateUpload(ctx, mk("0", "carol", 1, t0), t0, t0, nil), ErrNotFound)
	wantNoErr(t, "create a", s.CreateUpload(ctx, mk("a", "alice", 100, t0), t0, t0, nil))
	wantErr(t, "same id", s.CreateUpload(ctx, mk("a", "bob", 1, t0), t0, t0, nil), ErrExists)

	// The check sees the total and the owner's recent counted uploads.
	var gotTotal int64
	var gotRecent []string
	check := func(total int64, recent []Upload) error {
		gotTotal = total
		gotRecent = nil
		for _, u := range recent {
			gotRecent = append(gotRecent, u.ID[:1])
		}
		return nil
	}
	wantNoErr(t, "create b", s.CreateUpload(ctx, mk("b", "bob", 20, t0.Add(time.Minute)), t0, t0.Add(-time.Second), check))
	if gotTotal != 100 || gotRecent != nil {
		t.Fatalf("check saw %d %v", gotTotal, gotRecent)
	}
	wantNoErr(t, "finish a", s.FinishUpload(ctx, id("a"), t0.Add(2*time.Minute), ""))
	wantErr(t, "finish a twice", s.FinishUpload(ctx, id("a"), t0.Add(2*time.Minute), ""), ErrUploadDone)
	wantErr(t, "finish unknown", s.FinishUpload(ctx, id("z"), t0, ""), ErrNotFound)
	wantNoErr(t, "create c", s.CreateUpload(ctx, mk("c", "alice", 3, t0.Add(10*time.Minute)), t0, t0, nil))
	// Open slots created at openSince or before no longer count (b, c are
	// open), nor anything created at since or before.
	wantNoErr(t, "create d", s.CreateUpload(ctx, mk("d", "alice", 4, t0.Add(11*time.Minute)), t0.Add(-time.Second), t0.Add(time.Minute), check))
	if gotTotal != 103 || !reflect.DeepEqual(gotRecent, []string{"a", "c"}) {
		t.Fatalf("check saw %d %v", gotTotal, gotRecent)
	}
	refuse := errors.New("no")
	err := s.CreateUpload(ctx, mk("e", "alice", 4, t0), t0, t0, func(int64, []Upload) error { return refuse })
	if !errors.Is(err, refuse) {
		t.Fatalf("refused slot: %v", err)
	}
	if _, err := s.GetUpload(ctx, id("e")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused slot stored: %v", err)
	}

	u, err := s.GetUpload(ctx, id("a"))
	wantNoErr(t, "get", err)
	want := mk("a", "alice", 100, t0)
	want.Uploaded = t0.Add(2 * time.Minute)
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("GetUpload = %+v, want %+v", u, want)
	}
	// The PUT's type replaces an empty one.
	wantNoErr(t, "finish c", s.FinishUpload(ctx, id("c"), t0.Add(12*time.Minute), "text/plain"))
	if u, _ := s.GetUpload(ctx, id("c")); u.ContentType != "text/plain" {
		t.Fatalf("content type %q", u.ContentType)
	}

	st, err := s.UploadStats(ctx)
	wantNoErr(t, "stats", err)
	if st.Files != 2 || st.Bytes != 103 || !reflect.DeepEqual(st.PerUser, map[string]int64{"alice": 103}) {
		t.Fatalf("stats %+v", st)
	}

	// Expiry: open slots by creation, files by upload time.
	exp, err := s.ExpiredUploads(ctx, time.Time{}, t0.Add(10*time.Minute), 0)
	wantNoErr(t, "expired", err)
	if len(exp) != 1 || exp[0].ID != id("b") {
		t.Fatalf("expired open slots %+v", exp)
	}
	exp, err = s.ExpiredUploads(ctx, t0.Add(3*time.Minute), t0.Add(12*time.Minute), 0)
	wantNoErr(t, "expired", err)
	if len(exp) != 3 || exp[0].ID != id("a") || exp[1].ID != id("b") || exp[2].ID != id("d") {
		t.Fatalf("expired %+v", exp)
	}
	n, err := s.DeleteUploads(ctx, []string{id("a"), id("b"), id("z")})
	if n != 2 || err != nil {
		t.Fatalf("DeleteUploads = %d, %v", n, err)
	}
	ids, err := s.UploadIDs(ctx)
	wantNoErr(t, "ids", err)
	if !reflect.DeepEqual(ids, map[string]bool{id("c"): true, id("d"): true}) {
		t.Fatalf("ids %v", ids)
	}

	del, err := s.DeleteUserUploads(ctx, "alice")
	if err != nil || len(del) != 2 || del[0].ID != id("c") {
		t.Fatalf("DeleteUserUploads = %+v, %v", del, err)
	}
	if del, err := s.DeleteUserUploads(ctx, "nobody"); err != nil || del != nil {
		t.Fatalf("DeleteUserUploads(nobody) = %+v, %v", del, err)
	}

	// Deleting the account deletes its rows (the files are reclaimed by the
	// upload module's scan).
	wantNoErr(t, "create f", s.CreateUpload(ctx, mk("f", "bob", 1, t0), t0, t0, nil))
	wantNoErr(t, "delete bob", s.DeleteAccount(ctx, "bob"))
	if ids, _ := s.UploadIDs(ctx); len(ids) != 0 {
		t.Fatalf("rows left after account deletion: %v", ids)
	}
}
