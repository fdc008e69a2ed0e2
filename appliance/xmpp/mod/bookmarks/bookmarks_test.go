package bookmarks

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/peptest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/ping"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/private"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

func setup(t *testing.T) (*modtest.Env, *pep.Service, *peptest.Client, *peptest.Client) {
	t.Helper()
	e := modtest.New(t)
	disco.Register(e.S)
	ping.Register(e.S)
	private.Register(e.S)
	svc := pep.Register(e.S)
	Register(e.S, svc)
	e.AddUser("alice", "pw")
	ready := func(c *peptest.Client) bool { return svc.Wants(c.JID, peptest.ProbeNode) }
	a1 := peptest.Wrap(e.Connect("alice", "pw"), ready)
	a2 := peptest.Wrap(e.Connect("alice", "pw"), ready)
	a1.Online(NS + "+notify")
	a2.Online(NS + "+notify")
	a1.Drain()
	a2.Drain()
	return e, svc, a1, a2
}

func wantOK(t *testing.T, iq *xmlel.Element) *xmlel.Element {
	t.Helper()
	if iq.Get("type") != "result" {
		t.Fatalf("got error %s", iq)
	}
	return iq
}

// pepBookmarks returns the XEP-0402 items as "id name autojoin nick" lines.
func pepBookmarks(t *testing.T, c *peptest.Client) string {
	t.Helper()
	r := c.Request("get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub>`)
	if modtest.ErrorCondition(r) == "item-not-found" {
		return ""
	}
	wantOK(t, r)
	var out []string
	for _, it := range r.Child(pep.NS, "pubsub").Child(pep.NS, "items").ChildrenNamed(pep.NS, "item") {
		conf := it.Child(NS, "conference")
		out = append(out, it.Get("id")+" "+conf.Get("name")+" "+conf.Get("autojoin")+" "+conf.ChildText(NS, "nick"))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// legacyBookmarks returns the private storage:bookmarks document.
func legacyBookmarks(t *testing.T, c *peptest.Client) *xmlel.Element {
	t.Helper()
	r := wantOK(t, c.Request("get", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`))
	return r.Child(NSPrivate, "query").Child(NSLegacy, "storage")
}

func TestLegacyToPEP(t *testing.T) {
	_, _, a1, a2 := setup(t)
	wantOK(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>`+
		`<conference jid='Council@Chat.Example.org' name='Council' autojoin='true'><nick>Al</nick><password>pw</password></conference>`+
		`<conference jid='lobby@chat.example.org' name='Lobby'/>`+
		`<conference name='no jid'/>`+
		`<url name='Site' url='https://example.org'/>`+
		`</storage></query>`))
	if got, want := pepBookmarks(t, a2), "council@chat.example.org Council true Al\nlobby@chat.example.org Lobby  "; got != want {
		t.Fatalf("XEP-0402 items:\n%s\nwant\n%s", got, want)
	}
	evs := peptest.Events(a2.Drain(), NS)
	if len(evs) != 2 {
		t.Fatalf("%d publish events, want 2", len(evs))
	}
	if c := peptest.EventItems(evs[0])[0].Child(NS, "conference"); c.ChildText(NS, "password") != "pw" {
		t.Fatalf("event %s", evs[0])
	}
	// The document is stored as sent (the url stays).
	if doc := legacyBookmarks(t, a1); doc.Child(NSLegacy, "url") == nil || len(doc.ChildrenNamed(NSLegacy, "conference")) != 3 {
		t.Fatalf("stored document %s", doc)
	}

	// A replacement: one changed, one unchanged, one removed, one added.
	wantOK(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>`+
		`<conference jid='council@chat.example.org' name='Council' autojoin='1'><nick>Al</nick><password>pw</password></conference>`+
		`<conference jid='new@chat.example.org' name='New' autojoin='false'/>`+
		`</storage></query>`))
	if got, want := pepBookmarks(t, a2), "council@chat.example.org Council true Al\nnew@chat.example.org New  "; got != want {
		t.Fatalf("after replacement:\n%s\nwant\n%s", got, want)
	}
	var changes []string
	for _, ev := range peptest.Events(a2.Drain(), NS) {
		for _, it := range peptest.EventItems(ev) {
			changes = append(changes, it.Name.Local+" "+it.Get("id"))
		}
	}
	sort.Strings(changes)
	if got, want := strings.Join(changes, ", "), "item new@chat.example.org, retract lobby@chat.example.org"; got != want {
		t.Fatalf("notifications %q, want %q (none for the unchanged bookmark)", got, want)
	}
}

func TestPEPToLegacy(t *testing.T) {
	e, svc, a1, a2 := setup(t)
	// An old client stored a url; a new client publishes (Conversations style).
	wantOK(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><url name='Site' url='https://example.org'/></storage></query>`))
	publish := func(room, conf string) {
		wantOK(t, a2.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'><item id='`+room+`'>`+conf+`</item></publish>`+
			`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
			`<field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#max_items'><value>max</value></field>`+
			`<field var='pubsub#send_last_published_item'><value>never</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub>`))
	}
	publish("team@chat.example.org", `<conference xmlns='urn:xmpp:bookmarks:1' name='Team' autojoin='true'><nick>Alice</nick><extensions><x xmlns='urn:example'/></extensions></conference>`)
	publish("off@chat.example.org", `<conference xmlns='urn:xmpp:bookmarks:1' name='Off topic'/>`)
	doc := legacyBookmarks(t, a1)
	confs := doc.ChildrenNamed(NSLegacy, "conference")
	if len(confs) != 2 || doc.Child(NSLegacy, "url") == nil {
		t.Fatalf("converted document %s", doc)
	}
	if c := confs[0]; c.Get("jid") != "team@chat.example.org" || c.Get("name") != "Team" || c.Get("autojoin") != "true" || c.ChildText(NSLegacy, "nick") != "Alice" {
		t.Fatalf("converted conference %s", c)
	}
	if c := confs[1]; c.Get("jid") != "off@chat.example.org" || c.Get("autojoin") != "false" {
		t.Fatalf("converted conference %s", c)
	}
	// The node has the XEP-0402 configuration.
	if c, err := svc.NodeConfig(context.Background(), "alice", NS); err != nil || c != pep.PrivateConfig() {
		t.Fatalf("node config %+v, %v", c, err)
	}
	// Retract.
	wantOK(t, a2.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:xmpp:bookmarks:1' notify='true'><item id='off@chat.example.org'/></retract></pubsub>`))
	if confs := legacyBookmarks(t, a1).ChildrenNamed(NSLegacy, "conference"); len(confs) != 1 || confs[0].Get("jid") != "team@chat.example.org" {
		t.Fatalf("after retract: %v", confs)
	}
	// An old client's rewrite keeps the new client's extensions.
	wantOK(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>`+
		`<conference jid='team@chat.example.org' name='The Team' autojoin='true'><nick>Alice</nick></conference></storage></query>`))
	r := wantOK(t, a2.Request("get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub>`))
	if s := r.String(); !strings.Contains(s, `name="The Team"`) || !strings.Contains(s, `<x xmlns="urn:example"/>`) {
		t.Fatalf("after legacy rename: %s", s)
	}
	// Deleting the node empties the conferences, keeping the rest.
	wantOK(t, a2.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:xmpp:bookmarks:1'/></pubsub>`))
	if doc := legacyBookmarks(t, a1); len(doc.ChildrenNamed(NSLegacy, "conference")) != 0 {
		t.Fatalf("after node delete: %s", doc)
	}

	// With nothing in private storage, a get converts the PEP bookmarks.
	e.AddUser("bob", "pw")
	b := peptest.Wrap(e.Connect("bob", "pw"), nil)
	publishB := `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'><item id='x@chat.example.org'><conference xmlns='urn:xmpp:bookmarks:1' name='X'/></item></publish></pubsub>`
	wantOK(t, b.Request("set", "", publishB))
	if err := e.Store.SetPrivateXML(context.Background(), "bob", NSLegacy, nil); err != nil {
		t.Fatal(err)
	}
	if doc := legacyBookmarks(t, b); len(doc.ChildrenNamed(NSLegacy, "conference")) != 1 {
		t.Fatalf("converted on get: %s", doc)
	}
}

func TestPrivateStorageUnchanged(t *testing.T) {
	_, _, a1, _ := setup(t)
	wantOK(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus></query>`))
	r := wantOK(t, a1.Request("get", "", `<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>`))
	if r.Child(NSPrivate, "query").Child("exodus:prefs", "exodus").ChildText("exodus:prefs", "defaultnick") != "Hamlet" {
		t.Fatalf("private get %s", r)
	}
	modtest.WantIQError(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'><prefs/></query>`), "not-acceptable")
	modtest.WantIQError(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'/>`), "bad-request")
	modtest.WantIQError(t, a1.Request("set", "", `<query xmlns='jabber:iq:private'><p xmlns='x'>`+strings.Repeat("z", private.DefaultMaxBytes)+`</p></query>`), "not-acceptable")
	modtest.WantIQError(t, a1.Request("get", "bob@example.org", `<query xmlns='jabber:iq:private'><p xmlns='x'/></query>`), "service-unavailable")
	// The account advertises the conversion (XEP-0402 #compat).
	info := wantOK(t, a1.Request("get", "", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)).String()
	if !strings.Contains(info, NSCompat) {
		t.Fatalf("account disco#info lacks %s: %s", NSCompat, info)
	}
}
