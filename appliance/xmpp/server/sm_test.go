package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

func isSM(local string) func(*xmlel.Element) bool {
	return func(e *xmlel.Element) bool { return e.Name.Space == "urn:xmpp:sm:3" && e.Name.Local == local }
}

func isBody(prefix string) func(*xmlel.Element) bool {
	return func(e *xmlel.Element) bool {
		b := e.ChildText("", "body")
		return e.Name.Local == "message" && len(b) >= len(prefix) && b[:len(prefix)] == prefix
	}
}

func TestSMCounting(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	b := e.login("bob", "b")
	en := b.EnableSM()
	if en.Name.Local != "enabled" || en.Get("id") == "" || en.Get("resume") != "true" || en.Get("max") != "300" {
		t.Fatalf("enabled: %s", en)
	}
	b.Send("<presence/>")
	b.Expect(xmpptest.IsPresenceFrom(b.JID, "")) // 1 stanza to bob
	for i := 0; i < 3; i++ {
		a.Send("<message to='%s' type='chat'><body>m%d</body></message>", b.JID, i)
		b.Expect(xmpptest.IsMessage(fmt.Sprintf("m%d", i)))
	}
	// The server asks for acknowledgements.
	b.Expect(isSM("r"))
	// Bob has sent one stanza (presence) since enabling.
	b.Send("<r xmlns='urn:xmpp:sm:3'/>")
	if ack := b.Expect(isSM("a")); ack.Get("h") != "1" {
		t.Fatalf("server h = %s, want 1", ack.Get("h"))
	}
	b.Send("<a xmlns='urn:xmpp:sm:3' h='4'/>")
	// Acknowledging more than was sent is a stream error (XEP-0198 §4).
	b.Send("<a xmlns='urn:xmpp:sm:3' h='9'/>")
	if cond := b.WaitClosed(); cond != "undefined-condition" {
		t.Fatalf("handled-count-too-high: %q", cond)
	}
}

// A client that vanishes mid-conversation resumes without losing or
// duplicating a message (XEP-0198 §5).
func TestSMResumeNoLossNoDuplicate(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	b := e.login("bob", "phone")
	id := b.EnableSM().Get("id")
	b.Send("<presence/>")
	b.Expect(xmpptest.IsPresenceFrom(b.JID, "")) // h=1
	for i := 1; i <= 3; i++ {
		a.Send("<message to='bob@%s' type='chat'><body>msg-%d</body></message>", domain, i)
	}
	for i := 1; i <= 3; i++ {
		b.Expect(xmpptest.IsMessage(fmt.Sprintf("msg-%d", i)))
	}
	// Bob got 4 stanzas but acknowledged only the first two, then his
	// network went away.
	b.Send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
	b.Send("<message to='alice@%s' type='chat'><body>from bob</body></message>", domain)
	a.Expect(xmpptest.IsMessage("from bob"))
	b.Close()
	waitFor(t, func() bool { s := e.srv.Sessions("bob"); return len(s) == 1 && s[0].Hibernated() })
	// Messages while hibernated are kept, not stored offline.
	a.Send("<message to='bob@%s' type='chat'><body>msg-4</body></message>", domain)
	a.Send("<message to='bob@%s' type='chat'><body>msg-5</body></message>", domain)
	a.ExpectNone(200*time.Millisecond, xmpptest.IsPresenceFrom("bob@", "unavailable"))

	b2 := xmpptest.Dial(t, e.addr, domain)
	res := b2.LoginResume("bob", "pw-bob", id, 4)
	if res.Name.Local != "resumed" || res.Get("previd") != id {
		t.Fatalf("resume: %s", res)
	}
	// Bob sent 2 stanzas (presence, message) since enabling.
	if res.Get("h") != "2" {
		t.Fatalf("resumed h = %s, want 2", res.Get("h"))
	}
	// Exactly the stanzas after h=4 arrive again, in order, once.
	b2.Expect(xmpptest.IsMessage("msg-4"))
	b2.Expect(xmpptest.IsMessage("msg-5"))
	b2.ExpectNone(300*time.Millisecond, isBody("msg-"))
	// The session goes on: new messages, same full JID.
	a.Send("<message to='bob@%s/phone' type='chat'><body>msg-6</body></message>", domain)
	b2.Expect(xmpptest.IsMessage("msg-6"))
	b2.Send("<message to='alice@%s' type='chat'><body>back</body></message>", domain)
	if m := a.Expect(xmpptest.IsMessage("back")); m.Get("from") != "bob@"+domain+"/phone" {
		t.Fatalf("from after resume: %s", m.Get("from"))
	}
	// A stale id cannot be resumed twice.
	b3 := xmpptest.Dial(t, e.addr, domain)
	if res := b3.LoginResume("bob", "pw-bob", "no-such-id", 0); res.Name.Local != "failed" || res.Child("", "item-not-found") == nil {
		t.Fatalf("stale resume: %s", res)
	}
	// After a failed resumption the client can still bind.
	b3.Bind("other")
	if b3.JID != "bob@"+domain+"/other" {
		t.Fatalf("bind after failed resume: %q", b3.JID)
	}
}

// Resumption while the server has not noticed the old connection died: the
// old connection is closed and the session moves (XEP-0198 §5).
func TestSMResumeTakesOverLiveConnection(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("bob", "pw-bob")
	b := e.login("bob", "phone")
	id := b.EnableSM().Get("id")
	b2 := xmpptest.Dial(t, e.addr, domain)
	if res := b2.LoginResume("bob", "pw-bob", id, 0); res.Name.Local != "resumed" {
		t.Fatalf("resume: %s", res)
	}
	b.WaitClosed()
	if r := b2.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); r.Get("type") != "result" {
		t.Fatalf("resumed session: %s", r)
	}
	if n := len(e.srv.Sessions("bob")); n != 1 {
		t.Fatalf("%d sessions", n)
	}
	// Another account cannot resume it.
	e.addUser("eve", "pw-eve")
	ev := xmpptest.Dial(t, e.addr, domain)
	if res := ev.LoginResume("eve", "pw-eve", id, 0); res.Name.Local != "failed" {
		t.Fatalf("eve resumed bob's session: %s", res)
	}
}

// When the session expires, what was not acknowledged goes to offline
// storage (or other resources) instead of being lost.
func TestSMExpiryRoutesUnackedToOffline(t *testing.T) {
	e := newEnv(t, server.Limits{ResumeTimeout: 300 * time.Millisecond})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	b := e.login("bob", "phone")
	b.EnableSM()
	b.Send("<presence/>")
	b.Expect(xmpptest.IsPresenceFrom(b.JID, ""))
	a.Send("<message to='bob@%s' type='chat'><body>unacked</body></message>", domain)
	b.Expect(xmpptest.IsMessage("unacked")) // received but never acknowledged
	b.Close()
	waitFor(t, func() bool { s := e.srv.Sessions("bob"); return len(s) == 1 && s[0].Hibernated() })
	a.Send("<message to='bob@%s' type='chat'><body>while away</body></message>", domain)
	waitFor(t, func() bool { return len(e.srv.Sessions("bob")) == 0 })
	b2 := e.login("bob", "laptop")
	b2.Send("<presence/>")
	for _, body := range []string{"unacked", "while away"} {
		m := b2.Expect(xmpptest.IsMessage(body))
		if m.Child("urn:xmpp:delay", "delay") == nil {
			t.Fatalf("rerouted message without delay: %s", m)
		}
	}
	b2.ExpectNone(200*time.Millisecond, isBody("unacked"))
}

// A clean stream close ends the session without hibernation.
func TestSMCleanCloseDoesNotHibernate(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("bob", "pw-bob")
	b := e.login("bob", "phone")
	id := b.EnableSM().Get("id")
	b.Raw("</stream:stream>")
	b.WaitClosed()
	waitFor(t, func() bool { return len(e.srv.Sessions("bob")) == 0 })
	b2 := xmpptest.Dial(t, e.addr, domain)
	if res := b2.LoginResume("bob", "pw-bob", id, 0); res.Name.Local != "failed" {
		t.Fatalf("resumed a closed session: %s", res)
	}
}

func TestCSIHoldsPresencePassesMessages(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	b := e.online("bob", "b")
	b.Send("<inactive xmlns='urn:xmpp:csi:0'/>")
	b.IQ("get", "", "<query xmlns='jabber:iq:roster'/>") // the nonza was processed
	for i := 0; i < 3; i++ {
		a.Send("<presence to='%s'><status>s%d</status></presence>", b.JID, i)
	}
	a.Send("<message to='%s' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", b.JID)
	b.ExpectNone(200*time.Millisecond, xmpptest.IsPresenceFrom(a.JID, ""))
	a.Send("<message to='%s' type='chat'><body>important</body></message>", b.JID)
	// The newest held presence arrives first, then the message; older
	// presences were superseded.
	p := b.Expect(xmpptest.IsPresenceFrom(a.JID, ""))
	if p.ChildText("", "status") != "s2" {
		t.Fatalf("held presence: %s", p)
	}
	b.Expect(xmpptest.IsMessage("important"))
	b.ExpectNone(100*time.Millisecond, xmpptest.IsPresenceFrom(a.JID, ""))
	// Back to active: held stanzas are flushed.
	a.Send("<presence to='%s'><status>later</status></presence>", b.JID)
	b.ExpectNone(100*time.Millisecond, xmpptest.IsPresenceFrom(a.JID, ""))
	b.Send("<active xmlns='urn:xmpp:csi:0'/>")
	if p := b.Expect(xmpptest.IsPresenceFrom(a.JID, "")); p.ChildText("", "status") != "later" {
		t.Fatalf("flushed presence: %s", p)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached within 5 s")
}
