package server_test

import (
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"mellium.im/xmpp/stream"
)

// TestDisconnectUser ends every session of one account, a hibernated one
// (XEP-0198) included, with the given stream error, and leaves the other
// accounts alone.
func TestDisconnectUser(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	phone := e.online("alice", "phone")
	laptop := e.online("alice", "laptop")
	sleeper := e.login("alice", "sleeper")
	sleeper.EnableSM()
	sleeper.Conn().Close() // no closing tag: the session hibernates
	bob := e.online("bob", "pc")

	deadline := time.Now().Add(5 * time.Second)
	for hibernating := false; !hibernating; {
		if time.Now().After(deadline) {
			t.Fatal("the stream-managed session did not hibernate")
		}
		for _, s := range e.srv.Sessions("alice") {
			hibernating = hibernating || s.Hibernated()
		}
		time.Sleep(10 * time.Millisecond)
	}

	if n := e.srv.DisconnectUser("alice", stream.NotAuthorized, "account deleted"); n != 3 {
		t.Fatalf("DisconnectUser ended %d sessions, want 3", n)
	}
	for _, c := range []*xmpptest.Client{phone, laptop} {
		if cond := c.WaitClosed(); cond != "not-authorized" {
			t.Fatalf("stream error %q, want not-authorized", cond)
		}
	}
	for i := 0; len(e.srv.Sessions("alice")) > 0; i++ {
		if i > 500 {
			t.Fatalf("alice still has %d sessions", len(e.srv.Sessions("alice")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.srv.DisconnectUser("alice", stream.NotAuthorized, ""); n != 0 {
		t.Fatalf("second DisconnectUser ended %d sessions", n)
	}
	// Bob's session is untouched.
	bob.Send("<message to='bob@%s' id='m1'><body>still here</body></message>", domain)
	bob.Expect(xmpptest.IsMessage("still here"))
	if len(e.srv.Sessions("bob")) != 1 {
		t.Fatal("bob lost his session")
	}
}
