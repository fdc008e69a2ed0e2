package pep

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/peptest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/ping"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/vcard"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

const (
	tune   = "http://jabber.org/protocol/tune"
	domain = modtest.Domain
)

func setup(t *testing.T, users ...string) (*modtest.Env, *Service) {
	t.Helper()
	e := modtest.New(t)
	disco.Register(e.S)
	ping.Register(e.S)
	vcard.Register(e.S)
	svc := Register(e.S, CapsTimeout(5*time.Second), MaxItems(50))
	RegisterVCardConversion(e.S, svc)
	for _, u := range users {
		e.AddUser(u, "pw")
	}
	return e, svc
}

func connect(e *modtest.Env, svc *Service, user string) *peptest.Client {
	return peptest.Wrap(e.Connect(user, "pw"), func(c *peptest.Client) bool { return svc.Wants(c.JID, peptest.ProbeNode) })
}

// friends gives a and b a mutual presence subscription.
func friends(e *modtest.Env, a, b string) {
	e.Subscribe(a, b+"@"+domain, "both")
	e.Subscribe(b, a+"@"+domain, "both")
}

// options renders a publish-options or configuration form.
func options(formType string, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s</value></field>`, formType)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, `<field var='%s'><value>%s</value></field>`, kv[i], kv[i+1])
	}
	return b.String() + `</x>`
}

// publishXML renders a publish request; id "" leaves it out; kv are
// publish-options.
func publishXML(node, id, payload string, kv ...string) string {
	idAttr := ""
	if id != "" {
		idAttr = fmt.Sprintf(" id='%s'", id)
	}
	s := fmt.Sprintf(`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='%s'><item%s>%s</item></publish>`, node, idAttr, payload)
	if len(kv) > 0 {
		s += `<publish-options>` + options(NSPublishOptions, kv...) + `</publish-options>`
	}
	return s + `</pubsub>`
}

func itemsXML(node string, extra string) string {
	return fmt.Sprintf(`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='%s'%s/></pubsub>`, node, extra)
}

func wantOK(t *testing.T, iq *xmlel.Element) *xmlel.Element {
	t.Helper()
	if iq.Get("type") != "result" {
		t.Fatalf("got error %s", iq)
	}
	return iq
}

// itemIDs returns the ids of the items of an items result.
func itemIDs(t *testing.T, iq *xmlel.Element) []string {
	t.Helper()
	wantOK(t, iq)
	var ids []string
	for _, it := range iq.Child(NS, "pubsub").Child(NS, "items").ChildrenNamed(NS, "item") {
		ids = append(ids, it.Get("id"))
	}
	return ids
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: items %q, want %q", what, got, want)
	}
}

func tuneXML(title string) string {
	return `<tune xmlns='http://jabber.org/protocol/tune'><title>` + title + `</title></tune>`
}

func TestAutoCreatePublishAndRetrieve(t *testing.T) {
	e, svc := setup(t, "alice")
	a := connect(e, svc, "alice")

	// Auto-create with a given id (XEP-0060 §7.1.4).
	r := wantOK(t, a.Request("set", "", publishXML(tune, "t1", tuneXML("One"))))
	if got := r.Child(NS, "pubsub").Child(NS, "publish").Child(NS, "item").Get("id"); got != "t1" {
		t.Fatalf("publish result %s", r)
	}
	// A generated id when none is given (XEP-0060 §7.1.2).
	r = wantOK(t, a.Request("set", "alice@"+domain, publishXML("urn:example:multi", "", `<x xmlns='urn:example'/>`,
		"pubsub#max_items", "10")))
	gen := r.Child(NS, "pubsub").Child(NS, "publish").Child(NS, "item").Get("id")
	if len(gen) < 16 {
		t.Fatalf("generated id %q", gen)
	}
	wantOK(t, a.Request("set", "", publishXML("urn:example:multi", "", `<x xmlns='urn:example'/>`)))
	if ids := itemIDs(t, a.Request("get", "", itemsXML("urn:example:multi", ""))); len(ids) != 2 || ids[0] != gen || ids[1] == gen {
		t.Fatalf("generated ids %q", ids)
	}

	// The default configuration (XEP-0163 §5): presence access, one item.
	c, err := svc.NodeConfig(context.Background(), "alice", tune)
	if err != nil || c != DefaultConfig() {
		t.Fatalf("auto-created config %+v, %v", c, err)
	}
	wantOK(t, a.Request("set", "", publishXML(tune, "t2", tuneXML("Two"))))
	r = a.Request("get", "", itemsXML(tune, ""))
	wantIDs(t, "one item kept", itemIDs(t, r), "t2")
	it := r.Child(NS, "pubsub").Child(NS, "items").Child(NS, "item")
	if got := it.FirstElement().String(); got != `<tune xmlns="http://jabber.org/protocol/tune"><title>Two</title></tune>` {
		t.Fatalf("payload %s", got)
	}

	// Errors.
	modtest.WantIQError(t, a.Request("get", "", itemsXML("urn:nope", "")), "item-not-found")
	modtest.WantIQError(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'/></pubsub>`), "bad-request")
	modtest.WantIQError(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'><item/></publish></pubsub>`), "bad-request")
	modtest.WantIQError(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'><item><a xmlns='a'/><b xmlns='b'/></item></publish></pubsub>`), "bad-request")
	modtest.WantIQError(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish><item><a xmlns='a'/></item></publish></pubsub>`), "bad-request")
	modtest.WantIQError(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='x' jid='alice@example.org'/></pubsub>`), "feature-not-implemented")
}

func TestOwnerOnly(t *testing.T) {
	e, svc := setup(t, "alice", "bob")
	friends(e, "alice", "bob")
	a, b := connect(e, svc, "alice"), connect(e, svc, "bob")
	wantOK(t, a.Request("set", "", publishXML(tune, "t1", tuneXML("One"))))
	for _, req := range []string{
		publishXML(tune, "t2", tuneXML("Bob's")),
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='` + tune + `'><item id='t1'/></retract></pubsub>`,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='bob-was-here'/></pubsub>`,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='` + tune + `'/></pubsub>`,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='` + tune + `'/></pubsub>`,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='` + tune + `'>` + options(NSNodeConfig, "pubsub#access_model", "open") + `</configure></pubsub>`,
	} {
		modtest.WantIQError(t, b.Request("set", "alice@"+domain, req), "forbidden")
	}
	modtest.WantIQError(t, b.Request("get", "alice@"+domain, `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='`+tune+`'/></pubsub>`), "forbidden")
	// bob, a contact, may still read.
	wantIDs(t, "contact reads", itemIDs(t, b.Request("get", "alice@"+domain, itemsXML(tune, ""))), "t1")
}

func TestPublishOptions(t *testing.T) {
	e, svc := setup(t, "alice")
	a := connect(e, svc, "alice")
	const node = "urn:example:opts"
	// A new node takes the options as its configuration (XEP-0060 §7.1.5).
	wantOK(t, a.Request("set", "", publishXML(node, "1", `<x xmlns='urn:example'/>`,
		"pubsub#access_model", "open", "pubsub#max_items", "max", "pubsub#persist_items", "true")))
	c, _ := svc.NodeConfig(context.Background(), "alice", node)
	if c.AccessModel != AccessOpen || c.MaxItems != 0 || !c.PersistItems {
		t.Fatalf("config from publish-options: %+v", c)
	}
	// Matching options (normalised: "1" is "true") are fine.
	wantOK(t, a.Request("set", "", publishXML(node, "2", `<x xmlns='urn:example'/>`,
		"pubsub#access_model", "open", "pubsub#max_items", "max", "pubsub#persist_items", "1")))
	// Options that do not match: conflict, precondition-not-met; nothing published.
	for _, kv := range [][]string{
		{"pubsub#access_model", "presence"},
		{"pubsub#max_items", "10"},
		{"pubsub#persist_items", "false"},
		{"pubsub#unknown_option", "x"},
		{"pubsub#access_model", "authorize"},
	} {
		r := a.Request("set", "", publishXML(node, "3", `<x xmlns='urn:example'/>`, kv...))
		modtest.WantIQError(t, r, "conflict")
		if r.Child(server.NSClient, "error").Child(NSErrors, "precondition-not-met") == nil {
			t.Errorf("%v: %s", kv, r)
		}
	}
	wantIDs(t, "after refused publications", itemIDs(t, a.Request("get", "", itemsXML(node, ""))), "1", "2")
	// A wrong FORM_TYPE is a bad request.
	modtest.WantIQError(t, a.Request("set", "", strings.Replace(publishXML(node, "3", `<x xmlns='urn:example'/>`, "pubsub#access_model", "open"),
		NSPublishOptions, "urn:wrong", 1)), "bad-request")
	// Invalid options for a new node: the node is not created.
	modtest.WantIQError(t, a.Request("set", "", publishXML("urn:example:new", "1", `<x xmlns='urn:example'/>`, "pubsub#max_items", "-3")), "conflict")
	modtest.WantIQError(t, a.Request("get", "", itemsXML("urn:example:new", "")), "item-not-found")
}

func TestMaxItemsAndPersistence(t *testing.T) {
	e, svc := setup(t, "alice")
	a := connect(e, svc, "alice")
	const node = "urn:example:max"
	for i := 1; i <= 4; i++ {
		wantOK(t, a.Request("set", "", publishXML(node, fmt.Sprint(i), `<x xmlns='urn:example'/>`, "pubsub#max_items", "3")))
	}
	wantIDs(t, "oldest dropped", itemIDs(t, a.Request("get", "", itemsXML(node, ""))), "2", "3", "4")
	wantIDs(t, "max_items=2", itemIDs(t, a.Request("get", "", itemsXML(node, " max_items='2'"))), "3", "4")
	wantIDs(t, "by id", itemIDs(t, a.Request("get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='`+node+`'><item id='2'/><item id='4'/></items></pubsub>`)), "2", "4")
	modtest.WantIQError(t, a.Request("get", "", itemsXML(node, " max_items='0'")), "bad-request")
	// Republishing an id makes it the newest.
	wantOK(t, a.Request("set", "", publishXML(node, "2", `<x xmlns='urn:example'/>`)))
	wantIDs(t, "republished", itemIDs(t, a.Request("get", "", itemsXML(node, ""))), "3", "4", "2")
	// "max" is the service limit (MaxItems(50) in setup).
	for i := 0; i < 55; i++ {
		wantOK(t, a.Request("set", "", publishXML("urn:example:lots", fmt.Sprint(i), `<x xmlns='urn:example'/>`, "pubsub#max_items", "max")))
	}
	if ids := itemIDs(t, a.Request("get", "", itemsXML("urn:example:lots", ""))); len(ids) != 50 || ids[0] != "5" {
		t.Fatalf("max: %d items from %s", len(ids), ids[0])
	}
	// A node that does not persist items keeps only the last one.
	for i := 1; i <= 3; i++ {
		wantOK(t, a.Request("set", "", publishXML("urn:example:volatile", fmt.Sprint(i), `<x xmlns='urn:example'/>`,
			"pubsub#persist_items", "false", "pubsub#max_items", "10")))
	}
	wantIDs(t, "not persisted", itemIDs(t, a.Request("get", "", itemsXML("urn:example:volatile", ""))), "3")

	// Persistent items survive a restart: a new server on the same store.
	a.Close()
	e2 := modtest.New(t, func(c *server.Config) { c.Store = e.Store })
	disco.Register(e2.S)
	ping.Register(e2.S)
	svc2 := Register(e2.S)
	a2 := connect(e2, svc2, "alice")
	wantIDs(t, "after restart", itemIDs(t, a2.Request("get", "", itemsXML(node, ""))), "3", "4", "2")
}

func TestRetractDeletePurgeNotifications(t *testing.T) {
	e, svc := setup(t, "alice", "bob")
	friends(e, "alice", "bob")
	a1, a2, b := connect(e, svc, "alice"), connect(e, svc, "alice"), connect(e, svc, "bob")
	a1.Online(tune + "+notify")
	a2.Online(tune + "+notify")
	b.Online(tune + "+notify")
	a1.Drain()
	a2.Drain()
	b.Drain()

	wantOK(t, a1.Request("set", "", publishXML(tune, "t1", tuneXML("One"), "pubsub#max_items", "5")))
	wantOK(t, a1.Request("set", "", publishXML(tune, "t2", tuneXML("Two"))))
	for _, c := range []*peptest.Client{a1, a2, b} {
		for _, id := range []string{"t1", "t2"} {
			ev := c.Expect("publish event", peptest.IsEvent(tune))
			items := peptest.EventItems(ev)
			if ev.Get("from") != "alice@"+domain || ev.Get("to") != c.JID.String() || len(items) != 1 ||
				items[0].Get("id") != id || items[0].Child(tune, "tune").ChildText(tune, "title") == "" {
				t.Fatalf("%s got %s", c.JID, ev)
			}
		}
	}
	// Retract notifies (notify_retract defaults to true) …
	wantOK(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='`+tune+`'><item id='t1'/></retract></pubsub>`))
	for _, c := range []*peptest.Client{a1, a2, b} {
		items := peptest.EventItems(c.Expect("retract event", peptest.IsEvent(tune)))
		if len(items) != 1 || items[0].Name.Local != "retract" || items[0].Get("id") != "t1" {
			t.Fatalf("%s: retract event %v", c.JID, items)
		}
	}
	// … unless the request says notify='false'.
	wantOK(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='`+tune+`' notify='false'><item id='t2'/></retract></pubsub>`))
	if evs := peptest.Events(b.Drain(), tune); len(evs) != 0 {
		t.Fatalf("notify='false' sent %v", evs)
	}
	modtest.WantIQError(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='`+tune+`'><item id='t2'/></retract></pubsub>`), "item-not-found")
	modtest.WantIQError(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='`+tune+`'/></pubsub>`), "bad-request")

	// Purge.
	wantOK(t, a1.Request("set", "", publishXML(tune, "t3", tuneXML("Three"))))
	b.Expect("publish event", peptest.IsEvent(tune))
	wantOK(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='`+tune+`'/></pubsub>`))
	if ev := b.Expect("purge event", peptest.IsEvent(tune)); ev.Child(NSEvent, "event").Child(NSEvent, "purge") == nil {
		t.Fatalf("purge event %s", ev)
	}
	wantIDs(t, "purged", itemIDs(t, a1.Request("get", "", itemsXML(tune, ""))))

	// Delete.
	wantOK(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='`+tune+`'/></pubsub>`))
	for _, c := range []*peptest.Client{a2, b} {
		c.Expect("delete event", func(el *xmlel.Element) bool {
			return peptest.IsEvent(tune)(el) && el.Child(NSEvent, "event").Child(NSEvent, "delete") != nil
		})
	}
	modtest.WantIQError(t, a1.Request("get", "", itemsXML(tune, "")), "item-not-found")
	modtest.WantIQError(t, a1.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='`+tune+`'/></pubsub>`), "item-not-found")
}

// formValues returns the field values of a data form.
func formValues(x *xmlel.Element) map[string]string {
	m := make(map[string]string)
	for _, f := range x.ChildrenNamed(NSData, "field") {
		m[f.Get("var")] = f.ChildText(NSData, "value")
	}
	return m
}

func TestConfigureForm(t *testing.T) {
	e, svc := setup(t, "alice")
	a := connect(e, svc, "alice")
	const node = "urn:example:conf"
	for i := 1; i <= 3; i++ {
		wantOK(t, a.Request("set", "", publishXML(node, fmt.Sprint(i), `<x xmlns='urn:example'/>`, "pubsub#max_items", "3")))
	}
	get := func() map[string]string {
		r := wantOK(t, a.Request("get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='`+node+`'/></pubsub>`))
		x := r.Child(NSOwner, "pubsub").Child(NSOwner, "configure").Child(NSData, "x")
		if x.Get("type") != "form" {
			t.Fatalf("form %s", x)
		}
		return formValues(x)
	}
	v := get()
	want := map[string]string{"FORM_TYPE": NSNodeConfig, "pubsub#access_model": "presence", "pubsub#max_items": "3",
		"pubsub#persist_items": "1", "pubsub#send_last_published_item": "on_sub_and_presence", "pubsub#notify_retract": "1",
		"pubsub#deliver_payloads": "1", "pubsub#title": "", "pubsub#publish_model": "publishers"}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q", k, v[k], w)
		}
	}
	set := func(kv ...string) *xmlel.Element {
		return a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='`+node+`'>`+options(NSNodeConfig, kv...)+`</configure></pubsub>`)
	}
	wantOK(t, set("pubsub#access_model", "open", "pubsub#max_items", "2", "pubsub#title", "Conf &amp; co"))
	v = get()
	if v["pubsub#access_model"] != "open" || v["pubsub#max_items"] != "2" || v["pubsub#title"] != "Conf & co" || v["pubsub#persist_items"] != "1" {
		t.Fatalf("after configure: %v", v)
	}
	wantIDs(t, "lower max_items trims", itemIDs(t, a.Request("get", "", itemsXML(node, ""))), "2", "3")
	modtest.WantIQError(t, set("pubsub#access_model", "authorize"), "not-acceptable")
	modtest.WantIQError(t, set("pubsub#roster_groups_allowed", "friends"), "not-acceptable")
	modtest.WantIQError(t, set("pubsub#max_items", "lots"), "not-acceptable")
	modtest.WantIQError(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:nope'>`+options(NSNodeConfig, "pubsub#title", "x")+`</configure></pubsub>`), "item-not-found")
	wantOK(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='`+node+`'><x xmlns='jabber:x:data' type='cancel'/></configure></pubsub>`))
	if v := get(); v["pubsub#access_model"] != "open" {
		t.Fatal("a failed configuration changed the node")
	}

	// Create with configuration (XEP-0060 §8.1.3), then conflict.
	create := `<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='urn:example:made'/><configure>` +
		options(NSNodeConfig, "pubsub#access_model", "whitelist") + `</configure></pubsub>`
	wantOK(t, a.Request("set", "", create))
	if c, _ := svc.NodeConfig(context.Background(), "alice", "urn:example:made"); c.AccessModel != AccessWhitelist {
		t.Fatalf("created with %+v", c)
	}
	modtest.WantIQError(t, a.Request("set", "", create), "conflict")
	// Default configuration (XEP-0060 §8.3).
	r := wantOK(t, a.Request("get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><default node='urn:xmpp:bookmarks:1'/></pubsub>`))
	if v := formValues(r.Child(NSOwner, "pubsub").Child(NSOwner, "default").Child(NSData, "x")); v["pubsub#access_model"] != "whitelist" || v["pubsub#max_items"] != "max" {
		t.Fatalf("bookmarks default %v", v)
	}
}

func TestAccessModels(t *testing.T) {
	e, svc := setup(t, "alice", "bob", "carol", "dave")
	friends(e, "alice", "bob")
	e.Subscribe("alice", "dave@"+domain, "to") // alice sees dave, not the other way round
	e.Subscribe("dave", "alice@"+domain, "from")
	a, b, c, d := connect(e, svc, "alice"), connect(e, svc, "bob"), connect(e, svc, "carol"), connect(e, svc, "dave")
	for _, m := range []string{"open", "presence", "roster", "whitelist"} {
		wantOK(t, a.Request("set", "", publishXML("urn:example:"+m, "1", `<x xmlns='urn:example'/>`, "pubsub#access_model", m)))
	}
	for _, tc := range []struct {
		who   *peptest.Client
		model string
		want  string
	}{
		{a, "open", ""}, {a, "presence", ""}, {a, "roster", ""}, {a, "whitelist", ""},
		{b, "open", ""}, {b, "presence", ""}, {b, "roster", ""}, {b, "whitelist", "not-allowed"},
		{c, "open", ""}, {c, "presence", "not-authorized"}, {c, "roster", "not-authorized"}, {c, "whitelist", "not-allowed"},
		{d, "open", ""}, {d, "presence", "not-authorized"}, {d, "roster", "not-authorized"}, {d, "whitelist", "not-allowed"},
	} {
		r := tc.who.Request("get", "alice@"+domain, itemsXML("urn:example:"+tc.model, ""))
		if got := modtest.ErrorCondition(r); got != tc.want {
			t.Errorf("%s reading %s: %q, want %q (%s)", tc.who.JID, tc.model, got, tc.want, r)
		}
	}

	// disco#items lists the nodes each may read (XEP-0163 §6.2) …
	nodes := func(cl *peptest.Client) string {
		r := cl.Request("get", "alice@"+domain, `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
		if r.Get("type") != "result" {
			return modtest.ErrorCondition(r)
		}
		var ns []string
		for _, it := range r.Child(disco.NSItems, "query").ChildrenNamed(disco.NSItems, "item") {
			if it.Get("jid") != "alice@"+domain {
				t.Errorf("item jid %s", it)
			}
			ns = append(ns, strings.TrimPrefix(it.Get("node"), "urn:example:"))
		}
		sort.Strings(ns)
		return strings.Join(ns, " ")
	}
	for cl, want := range map[*peptest.Client]string{
		a: "open presence roster whitelist", b: "open presence roster", c: "open", d: "open",
	} {
		if got := nodes(cl); got != want {
			t.Errorf("%s sees nodes %q, want %q", cl.JID, got, want)
		}
	}
	// … and a node's item ids (XEP-0060 §5.5).
	r := wantOK(t, b.Request("get", "alice@"+domain, `<query xmlns='http://jabber.org/protocol/disco#items' node='urn:example:presence'/>`))
	if it := r.Child(disco.NSItems, "query").Child(disco.NSItems, "item"); it == nil || it.Get("name") != "1" {
		t.Fatalf("node items %s", r)
	}
	modtest.WantIQError(t, c.Request("get", "alice@"+domain, `<query xmlns='http://jabber.org/protocol/disco#items' node='urn:example:presence'/>`), "item-not-found")
	// Someone who may read nothing learns nothing.
	e.AddUser("erin", "pw")
	wantOK(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:example:open'/></pubsub>`))
	if got := nodes(c); got != "service-unavailable" {
		t.Errorf("stranger: %q", got)
	}
	// The account advertises PEP (XEP-0163 §6.1).
	info := wantOK(t, a.Request("get", "", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)).String()
	for _, want := range []string{`category="pubsub" type="pep"`, NS + "#publish-options", NS + "#access-whitelist", NS + "#config-node-max", NSVCardConversion} {
		if !strings.Contains(info, want) {
			t.Errorf("account disco#info lacks %s", want)
		}
	}
}

func TestNotificationFiltering(t *testing.T) {
	e, svc := setup(t, "alice", "bob", "carol", "dave")
	friends(e, "alice", "bob")
	friends(e, "alice", "carol")
	friends(e, "alice", "dave")
	a1, a2, a3 := connect(e, svc, "alice"), connect(e, svc, "alice"), connect(e, svc, "alice")
	b, c, d := connect(e, svc, "bob"), connect(e, svc, "carol"), connect(e, svc, "dave")
	a1.Online(tune + "+notify")
	a2.Online(tune + "+notify")
	a3.Online("urn:example:other+notify") // own resource without interest
	b.Online("urn:example:other+notify")  // contact without interest
	c.Online(tune + "+notify")
	d.OnlineWithPriority(-1, tune+"+notify") // negative priority: no contact notifications
	for _, cl := range []*peptest.Client{a1, a2, a3, b, c, d} {
		cl.Drain()
	}
	wantOK(t, a1.Request("set", "", publishXML(tune, "t1", tuneXML("One"))))
	for cl, want := range map[*peptest.Client]int{a1: 1, a2: 1, a3: 0, b: 0, c: 1, d: 0} {
		if got := len(peptest.Events(cl.Drain(), tune)); got != want {
			t.Errorf("%s got %d events, want %d", cl.JID, got, want)
		}
	}
	// Whitelisted nodes notify only the owner.
	wantOK(t, a1.Request("set", "", publishXML("urn:example:private", "p", `<x xmlns='urn:example'/>`, "pubsub#access_model", "whitelist")))
	c.Online(tune+"+notify", "urn:example:private+notify")
	a2.Online(tune+"+notify", "urn:example:private+notify")
	wantOK(t, a1.Request("set", "", publishXML("urn:example:private", "p2", `<x xmlns='urn:example'/>`)))
	if got := len(peptest.Events(c.Drain(), "urn:example:private")); got != 0 {
		t.Errorf("contact got %d whitelist events", got)
	}
	// a2's caps changed to add the node: it got the last item, then the new one.
	if evs := a2.Drain(); len(peptest.Events(evs, "urn:example:private")) != 2 {
		t.Errorf("owner got whitelist events %v, want 2", evs)
	}
	// An unavailable resource gets nothing.
	a2.Send(xmlel.New(server.NSClient, "presence", "type", "unavailable"))
	a2.Sync()
	wantOK(t, a1.Request("set", "", publishXML(tune, "t2", tuneXML("Two"))))
	if got := len(peptest.Events(a2.Drain(), tune)); got != 0 {
		t.Errorf("unavailable resource got %d events", got)
	}
}

func TestCapsCacheMiss(t *testing.T) {
	e, svc := setup(t, "alice", "bob")
	friends(e, "alice", "bob")
	a := connect(e, svc, "alice")
	wantOK(t, a.Request("set", "", publishXML(tune, "t1", tuneXML("One"))))

	// bob's caps are unknown: the server asks bob (XEP-0115 §6.3), verifies
	// the answer and then sends the last item.
	b1 := connect(e, svc, "bob")
	b1.Online(tune + "+notify")
	if b1.Queries != 1 {
		t.Fatalf("server sent %d disco#info queries, want 1", b1.Queries)
	}
	ev := b1.Expect("last item", peptest.IsEvent(tune))
	if it := peptest.EventItems(ev); len(it) != 1 || it[0].Get("id") != "t1" {
		t.Fatalf("last item %s", ev)
	}
	if dl := ev.Child(NSDelay, "delay"); dl == nil || dl.Get("stamp") != "2025-03-01T12:00:00.000Z" {
		t.Fatalf("last item delay %s", ev)
	}
	// The same caps again come from the cache.
	b2 := connect(e, svc, "bob")
	b2.Online(tune + "+notify")
	if b2.Queries != 0 {
		t.Fatalf("cache hit sent %d queries", b2.Queries)
	}
	b2.Expect("last item from the cache", peptest.IsEvent(tune))
	if _, ok := svc.caps.get(peptest.Ver(b1.Features)); !ok {
		t.Fatal("verified caps not cached")
	}

	// A client whose answer does not match its ver is served but not cached.
	b3 := connect(e, svc, "bob")
	b3.Features = []string{peptest.ProbeNode + "+notify", tune + "+notify"}
	b3.Send(xmlel.MustParse(`<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='x' ver='Zm9yZ2VkIHZlcg=='/></presence>`))
	b3.Expect("last item after an unverified answer", peptest.IsEvent(tune))
	if _, ok := svc.caps.get("Zm9yZ2VkIHZlcg=="); ok {
		t.Fatal("unverified caps cached")
	}
	// Live events reach every interested session.
	wantOK(t, a.Request("set", "", publishXML(tune, "t2", tuneXML("Two"))))
	for _, c := range []*peptest.Client{b1, b2, b3} {
		if it := peptest.EventItems(c.Expect("event", peptest.IsEvent(tune))); it[0].Get("id") != "t2" {
			t.Fatalf("%s: %v", c.JID, it)
		}
	}
}

func TestLastItemOnInitialPresence(t *testing.T) {
	e, svc := setup(t, "alice", "bob", "warm")
	friends(e, "alice", "bob")
	a := connect(e, svc, "alice")
	wantOK(t, a.Request("set", "", publishXML(tune, "t1", tuneXML("One"))))
	wantOK(t, a.Request("set", "", publishXML("urn:example:open", "o1", `<x xmlns='urn:example'/>`, "pubsub#access_model", "open")))
	wantOK(t, a.Request("set", "", publishXML("urn:example:private", "p1", `<x xmlns='urn:example'/>`, "pubsub#access_model", "whitelist")))
	wantOK(t, a.Request("set", "", publishXML("urn:example:never", "n1", `<x xmlns='urn:example'/>`, "pubsub#send_last_published_item", "never")))
	wantOK(t, a.Request("set", "", publishXML(NodeBookmarks, "room@muc.example.org", `<conference xmlns='urn:xmpp:bookmarks:1'/>`)))
	wantOK(t, a.Request("set", "", publishXML("urn:example:empty", "e1", `<x xmlns='urn:example'/>`)))
	wantOK(t, a.Request("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:example:empty'><item id='e1'/></retract></pubsub>`))
	all := []string{tune + "+notify", "urn:example:open+notify", "urn:example:private+notify", "urn:example:never+notify",
		NodeBookmarks + "+notify", "urn:example:empty+notify"}

	got := func(c *peptest.Client) string {
		var ns []string
		for _, el := range c.Drain() {
			if el.Name.Local == "message" && el.Get("from") == "alice@"+domain {
				if ev := el.Child(NSEvent, "event"); ev != nil {
					ns = append(ns, strings.TrimPrefix(ev.Child(NSEvent, "items").Get("node"), "urn:example:"))
				}
			}
		}
		sort.Strings(ns)
		return strings.Join(ns, " ")
	}
	// Caps known beforehand, so last items are sent while the presence is
	// handled (unknown caps are covered by TestCapsCacheMiss).
	connect(e, svc, "warm").Online(all...)
	b := connect(e, svc, "bob")
	b.Online(all...)
	if b.Queries != 0 {
		t.Fatal("caps not cached")
	}
	if g, want := got(b), "http://jabber.org/protocol/tune open"; g != want {
		t.Errorf("contact got last items of %q, want %q", g, want)
	}
	a2 := connect(e, svc, "alice")
	a2.Online(all...)
	if g, want := got(a2), "http://jabber.org/protocol/tune open private"; g != want {
		t.Errorf("owner got last items of %q, want %q", g, want)
	}
	// A presence update with the same caps sends nothing again.
	a2.Online(all...)
	if g := got(a2); g != "" {
		t.Errorf("presence update resent %q", g)
	}
}

func TestOMEMO(t *testing.T) {
	e, svc := setup(t, "alice", "bob", "mallory")
	friends(e, "alice", "bob")
	a, m := connect(e, svc, "alice"), connect(e, svc, "mallory")
	b := connect(e, svc, "bob")
	b.Online("eu.siacs.conversations.axolotl.devicelist+notify", "urn:xmpp:omemo:2:devices+notify")
	b.Drain()

	// Conversations-style legacy OMEMO (XEP-0384 0.3).
	wantOK(t, a.Request("set", "", publishXML("eu.siacs.conversations.axolotl.devicelist", "current",
		`<list xmlns='eu.siacs.conversations.axolotl'><device id='1234'/></list>`, "pubsub#access_model", "open")))
	wantOK(t, a.Request("set", "", publishXML("eu.siacs.conversations.axolotl.bundles:1234", "current",
		`<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>AAAA</signedPreKeyPublic></bundle>`,
		"pubsub#access_model", "open")))
	// OMEMO 2 (XEP-0384 0.8): one bundles node, one item per device.
	wantOK(t, a.Request("set", "", publishXML("urn:xmpp:omemo:2:devices", "current",
		`<devices xmlns='urn:xmpp:omemo:2'><device id='1234'/></devices>`, "pubsub#access_model", "open", "pubsub#max_items", "max")))
	for _, dev := range []string{"1234", "5678"} {
		wantOK(t, a.Request("set", "", publishXML("urn:xmpp:omemo:2:bundles", dev,
			`<bundle xmlns='urn:xmpp:omemo:2'><spk id='1'>AAAA</spk></bundle>`, "pubsub#access_model", "open", "pubsub#max_items", "max")))
	}
	// A stranger (no subscription at all) can fetch keys.
	wantIDs(t, "legacy devicelist", itemIDs(t, m.Request("get", "alice@"+domain, itemsXML("eu.siacs.conversations.axolotl.devicelist", ""))), "current")
	r := m.Request("get", "alice@"+domain, itemsXML("eu.siacs.conversations.axolotl.bundles:1234", " max_items='1'"))
	if !strings.Contains(r.String(), "signedPreKeyPublic") {
		t.Fatalf("bundle %s", r)
	}
	wantIDs(t, "omemo 2 bundles", itemIDs(t, m.Request("get", "alice@"+domain, itemsXML("urn:xmpp:omemo:2:bundles", ""))), "1234", "5678")
	wantIDs(t, "omemo 2 bundle by id", itemIDs(t, m.Request("get", "alice@"+domain,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:omemo:2:bundles'><item id='5678'/></items></pubsub>`)), "5678")
	// The contact was told about both device lists.
	evs := b.Drain()
	if len(peptest.Events(evs, "eu.siacs.conversations.axolotl.devicelist")) != 1 || len(peptest.Events(evs, "urn:xmpp:omemo:2:devices")) != 1 {
		t.Fatalf("contact events %v", evs)
	}
	// Republishing with the same options (as clients do on every login) works.
	wantOK(t, a.Request("set", "", publishXML("urn:xmpp:omemo:2:devices", "current",
		`<devices xmlns='urn:xmpp:omemo:2'><device id='1234'/><device id='5678'/></devices>`, "pubsub#access_model", "open", "pubsub#max_items", "max")))
}

func TestAvatar(t *testing.T) {
	e, svc := setup(t, "alice", "bob")
	friends(e, "alice", "bob")
	a, b := connect(e, svc, "alice"), connect(e, svc, "bob")
	b.Online(NodeAvatarMetadata + "+notify")
	b.Drain()
	img, pngB64 := makePNG(t, 2, 3)
	id := sha1Hex(img)
	// XEP-0084 §4.1, §4.2: data first, then metadata.
	wantOK(t, a.Request("set", "", publishXML(NodeAvatarData, id, `<data xmlns='urn:xmpp:avatar:data'>`+pngB64+`</data>`)))
	wantOK(t, a.Request("set", "", publishXML(NodeAvatarMetadata, id,
		fmt.Sprintf(`<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='%d' id='%s' type='image/png' width='2' height='3'/></metadata>`, len(img), id))))
	ev := b.Expect("metadata event", peptest.IsEvent(NodeAvatarMetadata))
	if it := peptest.EventItems(ev); it[0].Get("id") != id || it[0].Child(NodeAvatarMetadata, "metadata") == nil {
		t.Fatalf("metadata event %s", ev)
	}
	// bob fetches the data by id (XEP-0084 §4.1).
	r := wantOK(t, b.Request("get", "alice@"+domain, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'><item id='`+id+`'/></items></pubsub>`))
	if r.Child(NS, "pubsub").Child(NS, "items").Child(NS, "item").ChildText(NodeAvatarData, "data") != pngB64 {
		t.Fatalf("avatar data %s", r)
	}
	// vCard4 over PEP (XEP-0292) is a plain node with the default access.
	wantOK(t, a.Request("set", "", publishXML(NodeVCard4, "current", `<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Alice</text></fn></vcard>`)))
	wantIDs(t, "vcard4", itemIDs(t, b.Request("get", "alice@"+domain, itemsXML(NodeVCard4, ""))), "current")
	if c, _ := svc.NodeConfig(context.Background(), "alice", NodeAvatarData); c.AccessModel != AccessPresence {
		t.Fatalf("avatar data access %s", c.AccessModel)
	}
}
