package server_test

import (
	"context"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// TestOfflineStoredAfterAvailable: the router decided to store a message
// offline (no available resource), and the recipient's first resource
// became available and read its (empty) offline storage before the insert.
// The message must reach that resource at once and leave the storage
// empty, not wait for the next login (XEP-0160 §3). This is the race seen
// as a rare flake of TestSMExpiryRoutesUnackedToOffline, made deterministic
// by running the storing step after the resource is available.
func TestOfflineStoredAfterAvailable(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	bob := e.online("bob", "phone")

	msg, err := xmlel.Parse("<message xmlns='jabber:client' from='alice@" + domain + "/pc' to='bob@" + domain + "' type='chat' id='late'><body>stored late</body></message>")
	if err != nil {
		t.Fatal(err)
	}
	if !server.StoreOffline(e.srv, context.Background(), msg, jid.MustParse("bob@"+domain)) {
		t.Fatal("the message was not stored")
	}
	got := bob.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "message" && el.Get("id") == "late" })
	if got.Child("urn:xmpp:delay", "delay") == nil {
		t.Fatalf("offline delivery without a delay stamp: %s", got)
	}
	left, err := e.store.OfflineMessages(context.Background(), "bob")
	if err != nil || len(left) != 0 {
		t.Fatalf("offline storage after the hand-over: %d messages, %v", len(left), err)
	}
}
