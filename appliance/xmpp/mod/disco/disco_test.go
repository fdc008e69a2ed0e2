package disco

import (
	"context"
	"slices"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/contact"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/ping"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

var exampleFeatures = []string{
	"http://jabber.org/protocol/muc",
	"http://jabber.org/protocol/disco#info",
	"http://jabber.org/protocol/caps",
	"http://jabber.org/protocol/disco#items",
}

// XEP-0115 §5.2.
func TestCapsVerSimple(t *testing.T) {
	ids := []server.Identity{{Category: "client", Type: "pc", Name: "Exodus 0.9.1"}}
	if got, want := CapsVer(ids, exampleFeatures, nil), "QgayPKawpkPSDYmwT/WM94uAlu0="; got != want {
		t.Errorf("CapsVer = %s, want %s", got, want)
	}
}

// XEP-0115 §5.3, with fields out of order and a form without FORM_TYPE that
// must be ignored.
func TestCapsVerComplex(t *testing.T) {
	ids := []server.Identity{
		{Category: "client", Type: "pc", Lang: "en", Name: "Psi 0.11"},
		{Category: "client", Type: "pc", Lang: "el", Name: "Ψ 0.11"},
	}
	form := xmlel.MustParse(`<x xmlns='jabber:x:data' type='result'>
		<field var='os'><value>Mac</value></field>
		<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
		<field var='ip_version' type='text-multi'><value>ipv6</value><value>ipv4</value></field>
		<field var='software_version'><value>0.11</value></field>
		<field var='software'><value>Psi</value></field>
		<field var='os_version'><value>10.5.1</value></field>
	</x>`)
	untyped := xmlel.MustParse(`<x xmlns='jabber:x:data' type='result'><field var='a'><value>b</value></field></x>`)
	want := "q07IKJEyjvHSyhy//CH0CxmKi8w="
	if got := CapsVer(ids, exampleFeatures, []*xmlel.Element{form}); got != want {
		t.Errorf("CapsVer = %s, want %s", got, want)
	}
	if got := CapsVer(ids, exampleFeatures, []*xmlel.Element{untyped, form}); got != want {
		t.Errorf("with an untyped form: CapsVer = %s, want %s", got, want)
	}
	if ids[0].Lang != "en" || exampleFeatures[0] != "http://jabber.org/protocol/muc" {
		t.Error("CapsVer reordered its arguments")
	}
}

func newEnv(t *testing.T) (*modtest.Env, *handler) {
	e := modtest.New(t)
	Register(e.S)
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	e.AddUser("carol", "pw")
	e.Subscribe("alice", "bob@example.org", "from")
	e.Subscribe("alice", "carol@example.org", "to")
	return e, &handler{s: e.S, node: DefaultCapsNode}
}

func TestServerInfo(t *testing.T) {
	e, h := newEnv(t)
	ctx := context.Background()
	// Registered after disco: must still show up, in the caps too.
	e.S.AddFeature(server.ToServer, "urn:example:late")
	if err := contact.Register(e.S, map[string][]string{"admin-addresses": {"xmpp:admin@example.org"}}); err != nil {
		t.Fatal(err)
	}

	res, err := h.serverInfo(ctx, e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='http://jabber.org/protocol/disco#info'/>`))
	if err != nil {
		t.Fatal(err)
	}
	want := `<query xmlns="http://jabber.org/protocol/disco#info">` +
		`<identity category="server" type="im" name="Hearth"/>` +
		`<feature var="http://jabber.org/protocol/disco#info"/>` +
		`<feature var="http://jabber.org/protocol/disco#items"/>` +
		`<feature var="urn:example:late"/>` +
		`<x xmlns="jabber:x:data" type="result"><field var="FORM_TYPE" type="hidden"><value>http://jabber.org/network/serverinfo</value></field>` +
		`<field var="admin-addresses" type="list-multi"><value>xmpp:admin@example.org</value></field></x>` +
		`</query>`
	if got := res.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	// The caps node answers with the same info (XEP-0115 §6.2).
	node := DefaultCapsNode + "#" + h.ver()
	res, err = h.serverInfo(ctx, e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='http://jabber.org/protocol/disco#info' node='`+node+`'/>`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Get("node") != node || len(res.Elements()) != 5 {
		t.Errorf("caps node: got %s", res)
	}
	for _, n := range []string{DefaultCapsNode + "#stale=", DefaultCapsNode, "x"} {
		_, err := h.serverInfo(ctx, e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='http://jabber.org/protocol/disco#info' node='`+n+`'/>`))
		modtest.WantCondition(t, err, "item-not-found")
	}
}

func TestServerItems(t *testing.T) {
	e, h := newEnv(t)
	ctx := context.Background()
	res, err := h.serverItems(ctx, e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='http://jabber.org/protocol/disco#items'/>`))
	if err != nil || res.String() != `<query xmlns="http://jabber.org/protocol/disco#items"/>` { // no components
		t.Errorf("got %v, %v", res, err)
	}
	_, err = h.serverItems(ctx, e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='http://jabber.org/protocol/disco#items' node='x'/>`))
	modtest.WantCondition(t, err, "item-not-found")

	// Components are the server's items.
	for _, d := range []string{"upload.example.org", "groups.example.org"} {
		if err := e.S.AddComponent(d, nopComponent{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err = h.serverItems(ctx, e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='http://jabber.org/protocol/disco#items'/>`))
	want := `<query xmlns="http://jabber.org/protocol/disco#items"><item jid="groups.example.org"/><item jid="upload.example.org"/></query>`
	if err != nil || res.String() != want {
		t.Errorf("with components: got %v, %v", res, err)
	}
}

type nopComponent struct{}

func (nopComponent) HandleStanza(context.Context, *xmlel.Element, jid.JID, jid.JID) {}

func TestAccount(t *testing.T) {
	e, h := newEnv(t)
	ctx := context.Background()
	const info = `<query xmlns='http://jabber.org/protocol/disco#info'/>`
	const items = `<query xmlns='http://jabber.org/protocol/disco#items'/>`
	wantInfo := `<query xmlns="http://jabber.org/protocol/disco#info">` +
		`<identity category="account" type="registered"/>` +
		`<feature var="http://jabber.org/protocol/disco#info"/>` +
		`<feature var="http://jabber.org/protocol/disco#items"/>` +
		`</query>`
	for _, req := range [][2]string{{"alice@example.org/a", ""}, {"alice@example.org/a", "alice@example.org"}, {"bob@example.org/b", "alice@example.org"}} {
		res, err := h.accountInfo(ctx, e.IQ("get", req[0], req[1], info))
		if err != nil {
			t.Fatalf("%v: %v", req, err)
		}
		if got := res.String(); got != wantInfo {
			t.Errorf("%v: got %s, want %s", req, got, wantInfo)
		}
		res, err = h.accountItems(ctx, e.IQ("get", req[0], req[1], items))
		if err != nil || len(res.Children) != 0 {
			t.Errorf("%v items: %v, %v", req, res, err)
		}
	}
	// carol is not subscribed to alice's presence; alice is not subscribed
	// to bob's.
	for _, req := range [][2]string{{"carol@example.org/c", "alice@example.org"}, {"alice@example.org/a", "bob@example.org"}} {
		_, err := h.accountInfo(ctx, e.IQ("get", req[0], req[1], info))
		modtest.WantCondition(t, err, "service-unavailable")
		_, err = h.accountItems(ctx, e.IQ("get", req[0], req[1], items))
		modtest.WantCondition(t, err, "service-unavailable")
	}
	_, err := h.accountInfo(ctx, e.IQ("get", "alice@example.org/a", "", `<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>`))
	modtest.WantCondition(t, err, "item-not-found")
	_, err = h.accountItems(ctx, e.IQ("get", "alice@example.org/a", "", `<query xmlns='http://jabber.org/protocol/disco#items' node='x'/>`))
	modtest.WantCondition(t, err, "item-not-found")
}

func TestOverTheWire(t *testing.T) {
	e := modtest.New(t)
	Register(e.S)
	ping.Register(e.S) // after disco: the caps must include it
	e.AddUser("alice", "pw")
	c := e.Connect("alice", "pw")

	caps, ok := c.ServerCaps()
	if !ok {
		t.Fatal("no caps stream feature")
	}
	ids, feats, forms := e.S.DiscoInfo(server.ToServer)
	if !slices.Contains(feats, ping.NS) {
		t.Fatalf("features %v lack ping", feats)
	}
	if caps.Node != DefaultCapsNode || caps.Hash.String() != "sha-1" || caps.Ver != CapsVer(ids, feats, forms) {
		t.Fatalf("caps = %+v, want ver %s", caps, CapsVer(ids, feats, forms))
	}

	r := c.Request("get", "example.org", `<query xmlns='http://jabber.org/protocol/disco#info' node='`+caps.Node+"#"+caps.Ver+`'/>`)
	q := r.Child(NSInfo, "query")
	if q == nil {
		t.Fatalf("caps node: %s", r)
	}
	var gotFeats []string
	for _, f := range q.ChildrenNamed(NSInfo, "feature") {
		gotFeats = append(gotFeats, f.Get("var"))
	}
	var gotIDs []server.Identity
	for _, id := range q.ChildrenNamed(NSInfo, "identity") {
		gotIDs = append(gotIDs, server.Identity{Category: id.Get("category"), Type: id.Get("type"), Name: id.Get("name"), Lang: id.Lang()})
	}
	if v := CapsVer(gotIDs, gotFeats, q.ChildrenNamed(NSData, "x")); v != caps.Ver {
		t.Errorf("disco#info over the wire hashes to %s, the stream feature says %s", v, caps.Ver)
	}

	r = c.Request("get", "", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	if q := r.Child(NSInfo, "query"); q == nil || q.Child(NSInfo, "identity").Get("category") != "account" {
		t.Errorf("own account info: %s", r)
	}
	modtest.WantIQError(t, c.Request("get", "nobody@example.org", `<query xmlns='http://jabber.org/protocol/disco#items'/>`), "service-unavailable")
}
