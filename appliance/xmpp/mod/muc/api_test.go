package muc

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// bareOf returns user@modtest.Domain.
func bareOf(user string) string { return user + "@" + modtest.Domain }

// TestRoomAPI: a room made through the Go API is members-only and
// non-anonymous from the start; affiliation changes and destruction
// through the API reach the occupants as an owner's requests would.
func TestRoomAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	j, err := e.svc.CreateRoom(ctx, "Family", "The Family", map[string]string{bareOf("alice") + "/phone": AffiliationMember})
	if err != nil {
		t.Fatal(err)
	}
	if j.String() != roomJID("family") {
		t.Fatalf("room JID %s", j)
	}
	if _, err := e.svc.CreateRoom(ctx, "family", "", nil); !errors.Is(err, ErrRoomExists) {
		t.Fatalf("second CreateRoom = %v, want ErrRoomExists", err)
	}
	for _, bad := range []struct {
		name string
		affs map[string]string
	}{{"", nil}, {"a@b", nil}, {"ok", map[string]string{bareOf("bob"): "boss"}}, {"ok", map[string]string{"@": AffiliationMember}}} {
		if _, err := e.svc.CreateRoom(ctx, bad.name, "", bad.affs); err == nil || errors.Is(err, ErrRoomExists) {
			t.Fatalf("CreateRoom(%q, %v) = %v, want a plain error", bad.name, bad.affs, err)
		}
	}
	if affs, err := e.svc.Affiliations(ctx, "family"); err != nil || len(affs) != 1 || affs[bareOf("alice")] != AffiliationMember {
		t.Fatalf("Affiliations = %v, %v", affs, err)
	}
	// Stored at once with its configuration and affiliations.
	rooms, err := e.Store.MUCRooms(ctx)
	if err != nil || len(rooms) != 1 || rooms[0].Name != "family" || !strings.Contains(string(rooms[0].Config), `"members_only":true`) {
		t.Fatalf("stored rooms %+v, %v", rooms, err)
	}

	alice := e.online("alice", "a")
	p := joinOK(t, alice, "family", "Alice", "")
	if it := item(p); it.Get("affiliation") != AffiliationMember || it.Get("role") != roleParticipant {
		t.Fatalf("alice's self-presence %s", p)
	}
	if hasCodes(p, 201) {
		t.Fatalf("an API room is not created by its first occupant: %s", p)
	}
	info := wantResult(t, alice.IQ("get", roomJID("family"), "<query xmlns='"+NSDiscoInfo+"'/>")).String()
	for _, f := range []string{"muc_persistent", "muc_membersonly", "muc_nonanonymous", "muc_hidden", "muc_unsecured", "muc_unmoderated", "The Family"} {
		if !strings.Contains(info, f) {
			t.Fatalf("room disco#info lacks %s: %s", f, info)
		}
	}

	// Bob is not a member: registration-required (XEP-0045 §7.2.5).
	bob := e.online("bob", "b")
	wantPresenceError(t, bob, "family", "Bob", "", "registration-required")

	// Membership granted: Bob, not in the room, is told (status 101), and
	// may enter; Alice sees his real JID (non-anonymous room).
	if err := e.svc.SetAffiliation(ctx, "family", bareOf("bob"), AffiliationMember, "welcome"); err != nil {
		t.Fatal(err)
	}
	m := bob.Expect(func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && el.Get("from") == roomJID("family") && hasCodes(el, 101)
	})
	if it := item(m); it.Get("affiliation") != AffiliationMember || it.Get("jid") != bareOf("bob") {
		t.Fatalf("membership notice %s", m)
	}
	joinOK(t, bob, "family", "Bob", "")
	p = alice.Expect(presenceFrom(occ("family", "Bob"), ""))
	if it := item(p); it.Get("affiliation") != AffiliationMember || !strings.HasPrefix(it.Get("jid"), bareOf("bob")+"/") {
		t.Fatalf("bob's presence to alice %s", p)
	}

	// A change while he is in the room is broadcast (XEP-0045 §9.7 style).
	if err := e.svc.SetAffiliation(ctx, "family", bareOf("bob"), AffiliationAdmin, ""); err != nil {
		t.Fatal(err)
	}
	p = alice.Expect(presenceFrom(occ("family", "Bob"), ""))
	if it := item(p); it.Get("affiliation") != AffiliationAdmin || it.Get("role") != roleModerator {
		t.Fatalf("bob's presence after becoming admin %s", p)
	}
	bob.Expect(selfPresence(occ("family", "Bob"), ""))

	// Membership revoked: he leaves the members-only room (321, §9.4).
	if err := e.svc.SetAffiliation(ctx, "family", bareOf("bob"), AffiliationNone, ""); err != nil {
		t.Fatal(err)
	}
	p = alice.Expect(presenceFrom(occ("family", "Bob"), "unavailable"))
	if !hasCodes(p, 321) || item(p).Get("affiliation") != AffiliationNone {
		t.Fatalf("bob's removal as alice sees it %s", p)
	}
	if p = bob.Expect(selfPresence(occ("family", "Bob"), "unavailable")); !hasCodes(p, 321) {
		t.Fatalf("bob's removal as he sees it %s", p)
	}
	wantPresenceError(t, bob, "family", "Bob", "", "registration-required")
	stored, err := e.Store.MUCAffiliations(ctx, "family")
	if err != nil || len(stored) != 1 || stored[0].JID != bareOf("alice") {
		t.Fatalf("stored affiliations %+v, %v", stored, err)
	}
	if err := e.svc.SetAffiliation(ctx, "nope", bareOf("bob"), AffiliationMember, ""); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("SetAffiliation in an unknown room = %v", err)
	}
	if err := e.svc.SetAffiliation(ctx, "family", bareOf("bob"), "boss", ""); err == nil {
		t.Fatal("SetAffiliation with an unknown affiliation succeeded")
	}

	// Destruction (XEP-0045 §10.9).
	if err := e.svc.DestroyRoom(ctx, "family", "bye"); err != nil {
		t.Fatal(err)
	}
	p = alice.Expect(func(el *xmlel.Element) bool {
		return presenceFrom(occ("family", "Alice"), "unavailable")(el) && userX(el) != nil && userX(el).Child(NSUser, "destroy") != nil
	})
	if userX(p).Child(NSUser, "destroy").ChildText(NSUser, "reason") != "bye" {
		t.Fatalf("destruction presence %s", p)
	}
	if rooms, _ := e.Store.MUCRooms(ctx); len(rooms) != 0 {
		t.Fatalf("stored rooms after destruction %+v", rooms)
	}
	if _, err := e.svc.Affiliations(ctx, "family"); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("Affiliations after destruction = %v", err)
	}
	if err := e.svc.DestroyRoom(ctx, "family", ""); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("second DestroyRoom = %v", err)
	}
}

// TestCreateRoomTaken: a room an occupant is creating (locked, not stored
// yet) is taken for the API too.
func TestCreateRoomTaken(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	if p := join(alice, "mine", "Alice", ""); !hasCodes(p, 201) {
		t.Fatalf("creation presence %s", p)
	}
	if _, err := e.svc.CreateRoom(context.Background(), "mine", "", nil); !errors.Is(err, ErrRoomExists) {
		t.Fatalf("CreateRoom of a room being created = %v", err)
	}
}

func TestRoomLocalpart(t *testing.T) {
	for in, want := range map[string]string{
		"Family":                  "family",
		"Grandma's house":         "grandma-s-house",
		"  Ünïcode Ça va ":        "ünïcode-ça-va",
		"!!!":                     "circle",
		strings.Repeat("ab ", 40): strings.TrimRight(strings.Repeat("ab-", 16), "-"),
	} {
		if got := roomLocalpart(in); got != want {
			t.Errorf("roomLocalpart(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestForgetUser: a deleted account's affiliations go from every room,
// live and stored, with the change shown to the occupants; rooms where it
// had none are untouched.
func TestForgetUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, r := range []struct {
		name string
		affs map[string]string
	}{
		{"one", map[string]string{bareOf("alice"): AffiliationMember, bareOf("bob"): AffiliationMember}},
		{"two", map[string]string{bareOf("alice"): AffiliationMember, bareOf("bob"): AffiliationOwner}},
		{"three", map[string]string{bareOf("alice"): AffiliationMember}},
	} {
		if _, err := e.svc.CreateRoom(ctx, r.name, "", r.affs); err != nil {
			t.Fatal(err)
		}
	}
	alice := e.online("alice", "a")
	joinOK(t, alice, "one", "Alice", "")
	bob := e.online("bob", "b")
	joinOK(t, bob, "one", "Bob", "")

	if _, err := e.svc.ForgetUser(ctx, "not a jid@"); err == nil {
		t.Fatal("ForgetUser accepted an invalid JID")
	}
	n, err := e.svc.ForgetUser(ctx, bareOf("bob"))
	if err != nil || n != 2 {
		t.Fatalf("ForgetUser = %d, %v; want 2 rooms", n, err)
	}
	// Bob, no longer a member of the members-only room, is removed, and
	// Alice sees it (XEP-0045 §9.4, status 321).
	alice.Expect(func(el *xmlel.Element) bool {
		return el.Name.Local == "presence" && el.Get("from") == roomJID("one")+"/Bob" && hasCodes(el, 321)
	})
	for _, name := range []string{"one", "two", "three"} {
		affs, err := e.svc.Affiliations(ctx, name)
		if err != nil || affs[bareOf("bob")] != "" || affs[bareOf("alice")] != AffiliationMember {
			t.Fatalf("room %s affiliations after ForgetUser: %v, %v", name, affs, err)
		}
		stored, err := e.Store.MUCAffiliations(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range stored {
			if a.JID == bareOf("bob") {
				t.Fatalf("room %s still stores bob: %+v", name, stored)
			}
		}
	}
	if n, err := e.svc.ForgetUser(ctx, bareOf("bob")); err != nil || n != 0 {
		t.Fatalf("second ForgetUser = %d, %v", n, err)
	}
}
