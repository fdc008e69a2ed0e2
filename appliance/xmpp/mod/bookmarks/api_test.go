package bookmarks

import (
	"context"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/peptest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
)

// TestAPI: Add and Remove change the XEP-0402 node as a client's publish
// and retract would: connected clients are notified, the XEP-0048 document
// follows, and what the user set on an existing bookmark stays.
func TestAPI(t *testing.T) {
	e, svc, a1, a2 := setup(t)
	ctx := context.Background()
	const room = "family@groups.example.org"

	if err := Add(ctx, svc, "alice", "Family@Groups.example.org/ignored", "Family"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*peptest.Client{a1, a2} {
		evs := peptest.Events(c.Drain(), NS)
		if len(evs) != 1 {
			t.Fatalf("%s: %d bookmark events, want 1", c.JID, len(evs))
		}
		it := peptest.EventItems(evs[0])[0]
		if conf := it.Child(NS, "conference"); it.Get("id") != room || conf.Get("autojoin") != "true" || conf.Get("name") != "Family" {
			t.Fatalf("event %s", evs[0])
		}
	}
	if got, want := pepBookmarks(t, a1), room+" Family true "; got != want {
		t.Fatalf("XEP-0402 items %q, want %q", got, want)
	}
	if c, err := svc.NodeConfig(ctx, "alice", NS); err != nil || c != pep.PrivateConfig() {
		t.Fatalf("node config %+v, %v", c, err)
	}
	confs := legacyBookmarks(t, a1).ChildrenNamed(NSLegacy, "conference")
	if len(confs) != 1 || confs[0].Get("jid") != room || confs[0].Get("autojoin") != "true" || confs[0].Get("name") != "Family" {
		t.Fatalf("legacy conferences %v", confs)
	}

	// Unchanged: nothing is published again.
	if err := Add(ctx, svc, "alice", room, "Family"); err != nil {
		t.Fatal(err)
	}
	if evs := peptest.Events(a1.Drain(), NS); len(evs) != 0 {
		t.Fatalf("events for an unchanged bookmark: %v", evs)
	}

	// A bookmark the user made keeps its nickname and extensions.
	wantOK(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'><item id='team@groups.example.org'>`+
		`<conference xmlns='urn:xmpp:bookmarks:1' name='Mine'><nick>Al</nick><extensions><x xmlns='urn:example'/></extensions></conference></item></publish></pubsub>`))
	a1.Drain()
	if err := Add(ctx, svc, "alice", "team@groups.example.org", "Team"); err != nil {
		t.Fatal(err)
	}
	if got := pepBookmarks(t, a2); !strings.Contains(got, "team@groups.example.org Team true Al") {
		t.Fatalf("after Add over the user's bookmark: %q", got)
	}
	r := wantOK(t, a2.Request("get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub>`))
	if !strings.Contains(r.String(), `<x xmlns="urn:example"/>`) {
		t.Fatalf("extensions lost: %s", r)
	}

	// Remove: retraction notified, legacy document follows.
	a2.Drain()
	if err := Remove(ctx, svc, "alice", room); err != nil {
		t.Fatal(err)
	}
	evs := peptest.Events(a2.Drain(), NS)
	if len(evs) != 1 || peptest.EventItems(evs[0])[0].Name.Local != "retract" || peptest.EventItems(evs[0])[0].Get("id") != room {
		t.Fatalf("retraction events %v", evs)
	}
	if confs := legacyBookmarks(t, a1).ChildrenNamed(NSLegacy, "conference"); len(confs) != 1 || confs[0].Get("jid") != "team@groups.example.org" {
		t.Fatalf("legacy conferences after Remove %v", confs)
	}
	// Removing what is not there, or for an account without the node, is
	// no error; a malformed room is.
	if err := Remove(ctx, svc, "alice", room); err != nil {
		t.Fatal(err)
	}
	e.AddUser("bob", "pw")
	if err := Remove(ctx, svc, "bob", room); err != nil {
		t.Fatal(err)
	}
	if err := Add(ctx, svc, "alice", "@", "x"); err == nil {
		t.Fatal("Add with a malformed room succeeded")
	}
	if err := Remove(ctx, svc, "alice", ""); err == nil {
		t.Fatal("Remove with an empty room succeeded")
	}
}
