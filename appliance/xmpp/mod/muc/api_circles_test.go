package muc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/bookmarks"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/peptest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/mam"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/ping"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/private"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

var _ invite.GroupChat = CircleChats{}

// circleEnv is env with PEP, bookmarks and an invite.Service whose circles
// have group chats (CircleChats), as `hearth serve` wires them.
type circleEnv struct {
	*env
	pep *pep.Service
	inv *invite.Service
}

func newCircleEnv(t *testing.T) *circleEnv {
	t.Helper()
	e := &env{Env: modtest.New(t)}
	disco.Register(e.S)
	ping.Register(e.S)
	private.Register(e.S)
	ps := pep.Register(e.S)
	bookmarks.Register(e.S, ps)
	mam.Register(e.S)
	svc, err := Register(e.S, Options{Domain: svcDomain})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		e.AddUser(u, "pw-"+u)
	}
	e.addr = e.Addr()
	inv := invite.New(invite.Config{Store: e.Store, Domain: modtest.Domain, Roster: e.S,
		GroupChat: CircleChats{MUC: svc, PEP: ps}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return &circleEnv{env: e, pep: ps, inv: inv}
}

// bookmarkClient logs user in with caps asking for urn:xmpp:bookmarks:1
// notifications (XEP-0402 §3.2) and waits until the server knows them.
func (e *circleEnv) bookmarkClient(user string) *peptest.Client {
	e.T.Helper()
	c := peptest.Wrap(e.Connect(user, "pw-"+user), func(c *peptest.Client) bool { return e.pep.Wants(c.JID, peptest.ProbeNode) })
	c.Online(bookmarks.NS + "+notify")
	c.Drain()
	return c
}

// bookmarkEvent matches a urn:xmpp:bookmarks:1 notification about room,
// kind "item" or "retract".
func bookmarkEvent(room, kind string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		if !peptest.IsEvent(bookmarks.NS)(el) {
			return false
		}
		for _, it := range peptest.EventItems(el) {
			if it.Name.Local == kind && it.Get("id") == room {
				return true
			}
		}
		return false
	}
}

// pepBookmarks returns user's XEP-0402 bookmarks by room JID.
func (e *circleEnv) pepBookmarks(user string) map[string]*xmlel.Element {
	e.T.Helper()
	items, err := e.pep.Items(context.Background(), user, bookmarks.NS)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.T.Fatal(err)
	}
	out := make(map[string]*xmlel.Element)
	for _, it := range items {
		out[it.ID] = it.Payload
	}
	return out
}

// enter sends a MUC join from a peptest client and returns the
// self-presence or error.
func enter(c *peptest.Client, room, nick string) *xmlel.Element {
	c.Send(xmlel.New(server.NSClient, "presence", "to", occ(room, nick)).Add(xmlel.New(NS, "x")))
	return c.Expect("entering "+room, func(el *xmlel.Element) bool {
		return el.Get("from") == occ(room, nick) && (hasCodes(el, 110) || el.Get("type") == "error")
	})
}

// TestCircleGroupChat: a circle with a group chat, end to end through
// invite.Service with real clients: members get the room's affiliation
// and an autojoin bookmark (notified to their connected clients and kept
// in XEP-0048 storage), may enter the members-only room while others may
// not; leaving the circle takes both away; deleting the circle destroys
// the room with its occupants told.
func TestCircleGroupChat(t *testing.T) {
	e := newCircleEnv(t)
	ctx := context.Background()
	room := roomJID("family")

	alice := e.bookmarkClient("alice")
	if err := e.inv.CreateCircle(ctx, "Family", true); err != nil {
		t.Fatal(err)
	}
	circles, err := e.inv.Circles(ctx)
	if err != nil || len(circles) != 1 || circles[0].Room != room {
		t.Fatalf("Circles = %+v, %v", circles, err)
	}

	// Alice joins the circle: her connected client is notified of the
	// bookmark, with autojoin and the circle's name.
	if err := e.inv.JoinCircle(ctx, "Family", "alice"); err != nil {
		t.Fatal(err)
	}
	ev := alice.Expect("bookmark notification", bookmarkEvent(room, "item"))
	conf := peptest.EventItems(ev)[0].Child(bookmarks.NS, "conference")
	if conf == nil || conf.Get("autojoin") != "true" || conf.Get("name") != "Family" {
		t.Fatalf("bookmark event %s", ev)
	}
	// Old clients see it too (XEP-0048 in private XML storage).
	if data, err := e.Store.PrivateXML(ctx, "alice", bookmarks.NSLegacy); err != nil || !strings.Contains(string(data), room) {
		t.Fatalf("legacy bookmarks %q, %v", data, err)
	}
	// Her client autojoins the members-only room.
	if p := enter(alice, "family", "Alice"); p.Get("type") == "error" || item(p).Get("affiliation") != AffiliationMember {
		t.Fatalf("alice entering: %s", p)
	}

	// Carol is not in the circle: refused.
	carol := e.online("carol", "c")
	wantPresenceError(t, carol, "family", "Carol", "", "registration-required")

	// Bob joins the circle (not online meanwhile), then enters; Alice sees
	// him, and they have each other in the circle's roster group.
	if err := e.inv.JoinCircle(ctx, "Family", "bob"); err != nil {
		t.Fatal(err)
	}
	if b := e.pepBookmarks("bob")[room]; b == nil || b.Get("autojoin") != "true" {
		t.Fatalf("bob's bookmarks %v", e.pepBookmarks("bob"))
	}
	bob := e.online("bob", "b")
	joinOK(t, bob, "family", "Bob", "")
	alice.Expect("bob's presence", presenceFrom(occ("family", "Bob"), ""))
	if it, err := e.Store.RosterItem(ctx, "alice", bareOf("bob")); err != nil || it.Subscription != "both" || len(it.Groups) != 1 || it.Groups[0] != "Family" {
		t.Fatalf("alice's roster item for bob %+v, %v", it, err)
	}

	// Bob leaves the circle: he is removed from the room (321), Alice sees
	// it, his bookmark is gone, and he cannot come back.
	if err := e.inv.LeaveCircle(ctx, "Family", "bob"); err != nil {
		t.Fatal(err)
	}
	if p := alice.Expect("bob's removal", presenceFrom(occ("family", "Bob"), "unavailable")); !hasCodes(p, 321) {
		t.Fatalf("bob's removal %s", p)
	}
	bob.Expect(selfPresence(occ("family", "Bob"), "unavailable"))
	if b := e.pepBookmarks("bob"); b[room] != nil {
		t.Fatalf("bob's bookmarks after leaving %v", b)
	}
	wantPresenceError(t, bob, "family", "Bob", "", "registration-required")
	if affs, _ := e.svc.Affiliations(ctx, "family"); len(affs) != 1 || affs[bareOf("alice")] != AffiliationMember {
		t.Fatalf("affiliations after leaving %v", affs)
	}

	// Deleting the circle destroys the room: Alice, in it, is told, and her
	// bookmark is retracted; the circle is gone; the roster stays.
	if err := e.inv.DeleteCircle(ctx, "Family"); err != nil {
		t.Fatal(err)
	}
	p := alice.Expect("destruction", func(el *xmlel.Element) bool {
		return presenceFrom(occ("family", "Alice"), "unavailable")(el) && userX(el) != nil && userX(el).Child(NSUser, "destroy") != nil
	})
	if userX(p).Child(NSUser, "destroy").ChildText(NSUser, "reason") == "" {
		t.Fatalf("destruction presence without reason %s", p)
	}
	alice.Expect("bookmark retraction", bookmarkEvent(room, "retract"))
	if data, _ := e.Store.PrivateXML(ctx, "alice", bookmarks.NSLegacy); strings.Contains(string(data), room) {
		t.Fatalf("legacy bookmarks after deletion %q", data)
	}
	if circles, _ := e.inv.Circles(ctx); len(circles) != 0 {
		t.Fatalf("Circles after deletion %+v", circles)
	}
	if _, err := e.svc.Affiliations(ctx, "family"); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("room after deletion: %v", err)
	}
	if rooms, _ := e.Store.MUCRooms(ctx); len(rooms) != 0 {
		t.Fatalf("stored rooms after deletion %+v", rooms)
	}
	if _, err := e.Store.RosterItem(ctx, "alice", bareOf("bob")); err != nil {
		t.Fatalf("roster item after deletion: %v", err)
	}
}

// TestCircleChatInvitation: registering with an invitation that names a
// circle with a group chat gives the newcomer the room's membership and
// bookmark; a taken room address gets a suffix.
func TestCircleChatInvitation(t *testing.T) {
	e := newCircleEnv(t)
	ctx := context.Background()
	// Someone already made a room named like the circle.
	if _, err := e.svc.CreateRoom(ctx, "cousins", "Not the circle's", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.inv.CreateCircle(ctx, "Cousins", true); err != nil {
		t.Fatal(err)
	}
	room := roomJID("cousins-2")
	if c, _ := e.inv.Circles(ctx); len(c) != 1 || c[0].Room != room {
		t.Fatalf("Circles = %+v", c)
	}
	if err := e.inv.JoinCircle(ctx, "Cousins", "alice"); err != nil {
		t.Fatal(err)
	}
	inv, err := e.inv.Create(ctx, invite.Options{Circles: []string{"Cousins"}, Inviter: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.inv.Redeem(ctx, inv.Token, "erin", "pw-erin", e.inv.Now()); err != nil {
		t.Fatal(err)
	}
	if affs, _ := e.svc.Affiliations(ctx, "cousins-2"); affs[bareOf("erin")] != AffiliationMember {
		t.Fatalf("affiliations after redemption %v", affs)
	}
	if b := e.pepBookmarks("erin")[room]; b == nil || b.Get("name") != "Cousins" || b.Get("autojoin") != "true" {
		t.Fatalf("erin's bookmarks %v", e.pepBookmarks("erin"))
	}
	erin := e.online("erin", "e")
	joinOK(t, erin, "cousins-2", "Erin", "")
	// The other room is untouched.
	if affs, _ := e.svc.Affiliations(ctx, "cousins"); len(affs) != 0 {
		t.Fatalf("the unrelated room's affiliations %v", affs)
	}
	// A bookmark the user had already keeps its nickname.
	if _, err := e.pep.Publish(ctx, "dave", bookmarks.NS, room,
		xmlel.MustParse(`<conference xmlns='urn:xmpp:bookmarks:1' name='mine'><nick>D</nick></conference>`), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.inv.JoinCircle(ctx, "Cousins", "dave"); err != nil {
		t.Fatal(err)
	}
	if b := e.pepBookmarks("dave")[room]; b == nil || b.ChildText(bookmarks.NS, "nick") != "D" || b.Get("autojoin") != "true" || b.Get("name") != "Cousins" {
		t.Fatalf("dave's bookmark %s", b)
	}
}

// TestCircleChatsOldDomain: a room recorded under the service's former
// domain is still the circle's room (by its localpart), and bookmarks use
// the current address.
func TestCircleChatsOldDomain(t *testing.T) {
	e := newCircleEnv(t)
	ctx := context.Background()
	cc := CircleChats{MUC: e.svc, PEP: e.pep}
	room, err := cc.CreateRoom(ctx, "Family")
	if err != nil {
		t.Fatal(err)
	}
	old := "family@groups.old.example"
	if room != roomJID("family") {
		t.Fatalf("room %s", room)
	}
	if err := cc.AddMember(ctx, old, "Family", "bob"); err != nil {
		t.Fatal(err)
	}
	if affs, _ := e.svc.Affiliations(ctx, "family"); affs[bareOf("bob")] != AffiliationMember {
		t.Fatalf("affiliations %v", affs)
	}
	if b := e.pepBookmarks("bob"); b[room] == nil || len(b) != 1 {
		t.Fatalf("bookmarks %v", b)
	}
	if err := cc.RemoveMember(ctx, old, "bob"); err != nil {
		t.Fatal(err)
	}
	if b := e.pepBookmarks("bob"); len(b) != 0 {
		t.Fatalf("bookmarks after RemoveMember %v", b)
	}
	if affs, _ := e.svc.Affiliations(ctx, "family"); len(affs) != 0 {
		t.Fatalf("affiliations after RemoveMember %v", affs)
	}
	// A missing room: destroying is done, removing still drops the bookmark.
	if err := cc.DestroyRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	if err := cc.DestroyRoom(ctx, room); err != nil {
		t.Fatalf("DestroyRoom of a gone room = %v", err)
	}
	if err := cc.RemoveMember(ctx, room, "bob"); err != nil {
		t.Fatalf("RemoveMember of a gone room = %v", err)
	}
	if err := cc.AddMember(ctx, room, "Family", "bob"); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("AddMember of a gone room = %v", err)
	}
}

// TestCircleSetGroupChat: a circle made without a group chat gets one
// later (invite.Service.SetCircleChat): its members, online or not, get
// the affiliation and an autojoin bookmark (notified to connected
// clients) and may enter; closing it destroys the room with its
// occupants told and the bookmarks retracted, and the circle stays.
func TestCircleSetGroupChat(t *testing.T) {
	e := newCircleEnv(t)
	ctx := context.Background()
	room := roomJID("cousins")

	if err := e.inv.CreateCircle(ctx, "Cousins", false); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if err := e.inv.JoinCircle(ctx, "Cousins", u); err != nil {
			t.Fatal(err)
		}
	}
	alice := e.bookmarkClient("alice")

	if err := e.inv.SetCircleChat(ctx, "Cousins", true); err != nil {
		t.Fatal(err)
	}
	ev := alice.Expect("bookmark notification", bookmarkEvent(room, "item"))
	if conf := peptest.EventItems(ev)[0].Child(bookmarks.NS, "conference"); conf == nil || conf.Get("autojoin") != "true" || conf.Get("name") != "Cousins" {
		t.Fatalf("bookmark event %s", ev)
	}
	if b := e.pepBookmarks("bob")[room]; b == nil || b.Get("autojoin") != "true" {
		t.Fatalf("bob's bookmarks %v", e.pepBookmarks("bob"))
	}
	if affs, _ := e.svc.Affiliations(ctx, "cousins"); len(affs) != 2 || affs[bareOf("alice")] != AffiliationMember || affs[bareOf("bob")] != AffiliationMember {
		t.Fatalf("affiliations %v", affs)
	}
	if c, _ := e.inv.Circles(ctx); len(c) != 1 || c[0].Room != room {
		t.Fatalf("Circles = %+v", c)
	}
	if p := enter(alice, "cousins", "Alice"); p.Get("type") == "error" || item(p).Get("affiliation") != AffiliationMember {
		t.Fatalf("alice entering: %s", p)
	}
	bob := e.online("bob", "b")
	joinOK(t, bob, "cousins", "Bob", "")
	carol := e.online("carol", "c")
	wantPresenceError(t, carol, "cousins", "Carol", "", "registration-required")

	// Closing: both occupants get the destroy notice, Alice's client the
	// retraction; the room is gone, the circle and its members stay.
	if err := e.inv.SetCircleChat(ctx, "Cousins", false); err != nil {
		t.Fatal(err)
	}
	destroyed := func(nick string) func(*xmlel.Element) bool {
		return func(el *xmlel.Element) bool {
			return presenceFrom(occ("cousins", nick), "unavailable")(el) && userX(el) != nil && userX(el).Child(NSUser, "destroy") != nil
		}
	}
	alice.Expect("destruction", destroyed("Alice"))
	bob.Expect(destroyed("Bob"))
	alice.Expect("bookmark retraction", bookmarkEvent(room, "retract"))
	for _, u := range []string{"alice", "bob"} {
		if b := e.pepBookmarks(u); b[room] != nil {
			t.Fatalf("%s's bookmarks after closing %v", u, b)
		}
	}
	if _, err := e.svc.Affiliations(ctx, "cousins"); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("room after closing: %v", err)
	}
	if c, _ := e.inv.Circles(ctx); len(c) != 1 || c[0].Room != "" || strings.Join(c[0].Members, ",") != "alice,bob" {
		t.Fatalf("Circles after closing = %+v", c)
	}
	// A new room can be opened again, at the same address.
	if err := e.inv.SetCircleChat(ctx, "Cousins", true); err != nil {
		t.Fatal(err)
	}
	if affs, _ := e.svc.Affiliations(ctx, "cousins"); len(affs) != 2 {
		t.Fatalf("affiliations after reopening %v", affs)
	}
}
