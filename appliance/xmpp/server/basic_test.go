package server_test

import (
	"testing"

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
