package store

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCircleRooms(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")

	wantNoErr(t, "CreateCircle", s.CreateCircle(ctx, "Family", ""))
	wantErr(t, "CreateCircle again", s.CreateCircle(ctx, "Family", "x@groups.example.org"), ErrExists)
	if err := s.CreateCircle(ctx, " ", ""); err == nil {
		t.Fatal("CreateCircle with a blank name succeeded")
	}
	c, err := s.Circle(ctx, "Family")
	if err != nil || c.Room != "" || len(c.Members) != 0 {
		t.Fatalf("new circle = %+v, %v", c, err)
	}
	wantErr(t, "Circle unknown", func() error { _, err := s.Circle(ctx, "Nope"); return err }(), ErrNotFound)

	wantNoErr(t, "SetCircleRoom", s.SetCircleRoom(ctx, "Family", "family@groups.example.org"))
	wantErr(t, "SetCircleRoom unknown", s.SetCircleRoom(ctx, "Nope", "x@groups.example.org"), ErrNotFound)
	wantNoErr(t, "JoinCircle", s.JoinCircle(ctx, "Family", "bob"))
	wantNoErr(t, "JoinCircle", s.JoinCircle(ctx, "Family", "alice"))
	wantNoErr(t, "JoinCircle other", s.JoinCircle(ctx, "Work", "alice"))
	all, err := s.Circles(ctx)
	wantNoErr(t, "Circles", err)
	if len(all) != 2 || all[0].Name != "Family" || all[0].Room != "family@groups.example.org" ||
		strings.Join(all[0].Members, ",") != "alice,bob" || all[1].Name != "Work" || all[1].Room != "" {
		t.Fatalf("Circles = %+v", all)
	}

	// A pending invitation names the circle; deleting the circle takes it
	// out of the invitation, so redeeming it does not create it again.
	now := time.Now()
	wantNoErr(t, "CreateInvite", s.CreateInvite(ctx, Invite{Token: "tok", Created: now, Expires: now.Add(time.Hour),
		Role: RoleNormal, MaxUses: 1, Circles: []string{"Family", "Work"}}))

	wantNoErr(t, "DeleteCircle", s.DeleteCircle(ctx, "Family"))
	wantErr(t, "DeleteCircle again", s.DeleteCircle(ctx, "Family"), ErrNotFound)
	if m, err := s.CircleMembers(ctx, "Family"); err != nil || len(m) != 0 {
		t.Fatalf("members after delete = %v, %v", m, err)
	}
	all, _ = s.Circles(ctx)
	if len(all) != 1 || all[0].Name != "Work" {
		t.Fatalf("Circles after delete = %+v", all)
	}
	inv, err := s.Invite(ctx, "tok")
	if err != nil || strings.Join(inv.Circles, ",") != "Work" {
		t.Fatalf("invitation circles after delete = %v, %v", inv.Circles, err)
	}
	// The name can be used again, with another room.
	wantNoErr(t, "CreateCircle after delete", s.CreateCircle(ctx, "Family", "family-2@groups.example.org"))
	if c, _ := s.Circle(ctx, "Family"); c.Room != "family-2@groups.example.org" || len(c.Members) != 0 {
		t.Fatalf("re-created circle = %+v", c)
	}
}

// TestCircleRoomMigration upgrades a database with circles from the
// schema before migration 13 (schemaCircleRooms): existing circles have no room.
func TestCircleRoomMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	i := slices.Index(saved, schemaCircleRooms)
	if i < 0 {
		t.Fatal("schemaCircleRooms is not a migration")
	}
	migrations = saved[:i]
	s := openAt(t, path)
	mustCreate(t, s, "alice")
	if _, err := s.w.ExecContext(ctx, `INSERT INTO circles (name, created) VALUES ('Old', 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO circle_members (circle, username) VALUES ('Old', 'alice')`); err != nil {
		t.Fatal(err)
	}
	wantNoErr(t, "close", s.Close())
	migrations = saved
	s = openAt(t, path)
	c, err := s.Circle(ctx, "Old")
	if err != nil || c.Room != "" || strings.Join(c.Members, ",") != "alice" {
		t.Fatalf("migrated circle = %+v, %v", c, err)
	}
}
