package server_test

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

func TestLoginAndChat(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "phone")
	b := e.online("bob", "laptop")
	if a.JID != "alice@"+domain+"/phone" {
		t.Fatalf("bound JID = %q", a.JID)
	}
	a.Send("<message to='bob@%s' type='chat' id='m1'><body>hi bob</body></message>", domain)
	m := b.Expect(xmpptest.IsMessage("hi bob"))
	if m.Get("from") != a.JID {
		t.Fatalf("from = %q, want stamped %q", m.Get("from"), a.JID)
	}
}

// Whitespace between negotiation elements is legal (RFC 6120 §11.7);
// go-sendxmpp sends a newline after <starttls/> and <auth/>.
func TestWhitespaceDuringNegotiation(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	c := xmpptest.Dial(t, e.addr, domain)
	c.OpenStream()
	c.Raw("\n  <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n")
	c.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "proceed" })
	tc := tls.Client(c.Conn(), &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.SetConn(tc)
	c.OpenStream()
	c.Raw("\n")
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pw-alice"))
	c.Raw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + plain + "</auth>\n")
	if el := c.Expect(func(el *xmlel.Element) bool { return el.Name.Space == "urn:ietf:params:xml:ns:xmpp-sasl" }); el.Name.Local != "success" {
		t.Fatalf("PLAIN: %s", el)
	}
	c.OpenStream()
	c.Raw("\n\t")
	c.Bind("ws")
	c.Send("\n<presence/>\n")
	c.Expect(xmpptest.IsPresenceFrom(c.JID, ""))
}

// After STARTTLS on TLS 1.3 the server offers -PLUS with tls-exporter
// (XEP-0440) and a -PLUS login binds to this very TLS connection.
func TestSCRAMPlusThroughServer(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	c := xmpptest.Dial(t, e.addr, domain)
	c.OpenStream()
	f := c.StartTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	mechs := f.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms")
	if mechs == nil || !strings.Contains(mechs.String(), "SCRAM-SHA-256-PLUS") {
		t.Fatalf("features: %s", f)
	}
	cb := f.Child("urn:xmpp:sasl-cb:0", "sasl-channel-binding")
	if cb == nil || !strings.Contains(cb.String(), "tls-exporter") {
		t.Fatalf("no XEP-0440 list: %s", f)
	}
	if el := c.AuthPlus("alice", "pw-alice"); el.Name.Local != "success" {
		t.Fatalf("-PLUS: %s", el)
	}
	f = c.OpenStream()
	if f.Child("urn:ietf:params:xml:ns:xmpp-bind", "bind") == nil || f.Child("urn:xmpp:features:rosterver", "ver") == nil {
		t.Fatalf("post-auth features: %s", f)
	}
	c.Bind("plus")
}

// Directed presence reaches a non-subscriber, who then also gets the
// unavailable when the sender leaves (RFC 6121 §4.6).
func TestDirectedPresence(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	b := e.online("bob", "b")
	a.Send("<presence to='%s'><status>hi</status></presence>", b.JID)
	if p := b.Expect(xmpptest.IsPresenceFrom(a.JID, "")); p.ChildText("", "status") != "hi" {
		t.Fatalf("directed presence: %s", p)
	}
	a.Close()
	b.Expect(xmpptest.IsPresenceFrom(a.JID, "unavailable"))
}
