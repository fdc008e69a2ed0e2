package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

func isRosterPush(contact, sub string) func(*xmlel.Element) bool {
	return func(e *xmlel.Element) bool {
		if e.Name.Local != "iq" || e.Get("type") != "set" {
			return false
		}
		q := e.Child("jabber:iq:roster", "query")
		if q == nil {
			return false
		}
		it := q.Child("", "item")
		return it != nil && it.Get("jid") == contact && it.Get("subscription") == sub
	}
}

func TestSubscriptionHandshakeAndPresence(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.login("alice", "a1")
	a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	a.Send("<presence/>")
	b := e.login("bob", "b1")
	b.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	b.Send("<presence><priority>1</priority></presence>")

	// RFC 6121 §3.1.2: alice subscribes; her roster shows ask.
	a.Send("<presence to='bob@%s' type='subscribe'/>", domain)
	push := a.Expect(isRosterPush("bob@"+domain, "none"))
	if push.Child("", "query").Child("", "item").Get("ask") != "subscribe" {
		t.Fatalf("no ask in push: %s", push)
	}
	req := b.Expect(xmpptest.IsPresenceFrom("alice@"+domain, "subscribe"))
	if req.Get("from") != "alice@"+domain {
		t.Fatalf("subscribe from %q, want bare JID", req.Get("from"))
	}
	// §3.1.5: bob approves; both rosters update, alice gets bob's presence.
	b.Send("<presence to='alice@%s' type='subscribed'/>", domain)
	b.Expect(isRosterPush("alice@"+domain, "from"))
	a.Expect(isRosterPush("bob@"+domain, "to"))
	a.Expect(xmpptest.IsPresenceFrom("bob@"+domain, "subscribed"))
	a.Expect(xmpptest.IsPresenceFrom("bob@"+domain+"/b1", ""))

	// Bob subscribes back, alice approves: both.
	b.Send("<presence to='alice@%s' type='subscribe'/>", domain)
	a.Expect(xmpptest.IsPresenceFrom("bob@"+domain, "subscribe"))
	a.Send("<presence to='bob@%s' type='subscribed'/>", domain)
	a.Expect(isRosterPush("bob@"+domain, "both"))
	b.Expect(isRosterPush("alice@"+domain, "both"))
	b.Expect(xmpptest.IsPresenceFrom("alice@"+domain+"/a1", ""))

	// Broadcast of a presence change to subscribers (§4.4).
	a.Send("<presence><show>away</show></presence>")
	p := b.Expect(xmpptest.IsPresenceFrom("alice@"+domain+"/a1", ""))
	if p.ChildText("", "show") != "away" {
		t.Fatalf("broadcast lost <show/>: %s", p)
	}
	// Disconnect → unavailable to subscribers (§4.5.2).
	a.Close()
	b.Expect(xmpptest.IsPresenceFrom("alice@"+domain+"/a1", "unavailable"))

	// Persisted state after reconnect: roster version and items.
	a2 := e.login("alice", "a2")
	r := a2.IQ("get", "", "<query xmlns='jabber:iq:roster' ver=''/>")
	q := r.Child("jabber:iq:roster", "query")
	if q == nil || len(q.Elements()) != 1 || q.Elements()[0].Get("subscription") != "both" {
		t.Fatalf("roster = %s", r)
	}
	// XEP-0237: the current version gives an empty result.
	r = a2.IQ("get", "", "<query xmlns='jabber:iq:roster' ver='"+q.Get("ver")+"'/>")
	if r.Get("type") != "result" || r.FirstElement() != nil {
		t.Fatalf("versioned roster get = %s", r)
	}
	// Initial presence probes bob: alice learns bob is online (§4.3).
	a2.Send("<presence/>")
	a2.Expect(xmpptest.IsPresenceFrom("bob@"+domain+"/b1", ""))
}

func TestPendingSubscriptionRedeliveredAndPreApproval(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	e.addUser("carol", "pw-carol")
	a := e.online("alice", "a")
	a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	a.Send("<presence to='bob@%s' type='subscribe'/>", domain)
	a.Expect(isRosterPush("bob@"+domain, "none"))
	// Bob was offline: the request waits and arrives at his initial presence.
	b := e.online("bob", "b")
	b.Expect(xmpptest.IsPresenceFrom("alice@"+domain, "subscribe"))

	// Pre-approval (RFC 6121 §3.4): carol pre-approves bob, then bob's
	// request is answered automatically.
	c := e.online("carol", "c")
	c.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	c.Send("<presence to='bob@%s' type='subscribed'/>", domain)
	item := c.Expect(isRosterPush("bob@"+domain, "none")).Child("", "query").Child("", "item")
	if item.Get("approved") != "true" {
		t.Fatalf("pre-approval not recorded: %s", item)
	}
	b.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	b.Send("<presence to='carol@%s' type='subscribe'/>", domain)
	b.Expect(isRosterPush("carol@"+domain, "to"))
	c.Expect(isRosterPush("bob@"+domain, "from"))
	c.ExpectNone(200*time.Millisecond, xmpptest.IsPresenceFrom("bob@"+domain, "subscribe"))
}

func TestRosterSetRemoveAndErrors(t *testing.T) {
	e := newEnv(t, server.Limits{MaxRosterItems: 2})
	e.addUser("alice", "pw-alice")
	a := e.login("alice", "a")
	a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	r := a.IQ("set", "", "<query xmlns='jabber:iq:roster'><item jid='x@elsewhere.test' name='X'><group>Family</group></item></query>")
	if r.Get("type") != "result" {
		t.Fatalf("roster set: %s", r)
	}
	a.Expect(isRosterPush("x@elsewhere.test", "none"))
	for _, tc := range []struct{ payload, cond string }{
		{"<query xmlns='jabber:iq:roster'><item jid='a@b'/><item jid='c@d'/></query>", "bad-request"},
		{"<query xmlns='jabber:iq:roster'><item jid='y@z'><group>g</group><group>g</group></item></query>", "bad-request"},
		{"<query xmlns='jabber:iq:roster'><item jid='y@z'><group></group></item></query>", "not-acceptable"},
		{"<query xmlns='jabber:iq:roster'><item jid='@@bad'/></query>", "jid-malformed"},
		{"<query xmlns='jabber:iq:roster'><item jid='nobody@z' subscription='remove'/></query>", "item-not-found"},
	} {
		r := a.IQ("set", "", tc.payload)
		if got := xmpptest.ErrorCondition(r); got != tc.cond {
			t.Errorf("%s: got %q, want %q (%s)", tc.payload, got, tc.cond, r)
		}
	}
	a.IQ("set", "", "<query xmlns='jabber:iq:roster'><item jid='y@elsewhere.test'/></query>")
	r = a.IQ("set", "", "<query xmlns='jabber:iq:roster'><item jid='z@elsewhere.test'/></query>")
	if got := xmpptest.ErrorCondition(r); got != "not-allowed" {
		t.Fatalf("roster over the cap: %s", r)
	}
	a.IQ("set", "", "<query xmlns='jabber:iq:roster'><item jid='x@elsewhere.test' subscription='remove'/></query>")
	a.Expect(isRosterPush("x@elsewhere.test", "remove"))
	if r := a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); len(r.FirstElement().Elements()) != 1 {
		t.Fatalf("after remove: %s", r)
	}
	// Someone else's roster is not readable.
	e.addUser("bob", "pw-bob")
	if r := a.IQ("get", "bob@"+domain, "<query xmlns='jabber:iq:roster'/>"); xmpptest.ErrorCondition(r) != "forbidden" {
		t.Fatalf("foreign roster get: %s", r)
	}
}

func TestOfflineStorage(t *testing.T) {
	e := newEnv(t, server.Limits{MaxOfflinePerUser: 2})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	a.Send("<message to='bob@%s' type='chat' id='1'><body>one</body></message>", domain)
	a.Send("<message to='bob@%s/gone' type='chat' id='2'><body>two</body></message>", domain)
	a.Send("<message to='bob@%s' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", domain)
	a.Send("<message to='bob@%s' type='chat' id='3'><body>three</body></message>", domain)
	// The cap is 2: the third stored message bounces.
	errMsg := a.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "message" && el.Get("id") == "3" })
	if xmpptest.ErrorCondition(errMsg) != "service-unavailable" {
		t.Fatalf("over-quota answer: %s", errMsg)
	}
	// A connected but not-yet-available resource gets nothing (RFC 6121 §8.5.2.1.1).
	b := e.login("bob", "b")
	b.ExpectNone(200*time.Millisecond, xmpptest.IsMessage("one"))
	b.Send("<presence/>")
	m1 := b.Expect(xmpptest.IsMessage("one"))
	b.Expect(xmpptest.IsMessage("two"))
	if d := m1.Child("urn:xmpp:delay", "delay"); d == nil || d.Get("stamp") == "" || d.Get("from") != domain {
		t.Fatalf("no XEP-0203 delay: %s", m1)
	}
	var n int
	var err error
	for i := 0; i < 100; i++ { // deletion follows delivery; allow it to land
		if n, err = e.store.OfflineCount(context.Background(), "bob"); err != nil || n == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || n != 0 {
		t.Fatalf("offline count after delivery = %d, %v", n, err)
	}
}

func TestMessageDeliveryRules(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	hi := e.login("bob", "hi")
	hi.Send("<presence><priority>5</priority></presence>")
	lo := e.login("bob", "lo")
	lo.Send("<presence><priority>1</priority></presence>")
	neg := e.login("bob", "neg")
	neg.Send("<presence><priority>-1</priority></presence>")
	time.Sleep(100 * time.Millisecond)

	// Bare JID: highest priority only (RFC 6121 §8.5.2.1.1).
	a.Send("<message to='bob@%s' type='chat'><body>bare</body></message>", domain)
	hi.Expect(xmpptest.IsMessage("bare"))
	lo.ExpectNone(200*time.Millisecond, xmpptest.IsMessage("bare"))
	neg.ExpectNone(10*time.Millisecond, xmpptest.IsMessage("bare"))
	// Full JID: exactly that resource, even with negative priority (§8.5.3.1).
	a.Send("<message to='bob@%s/neg' type='chat'><body>full</body></message>", domain)
	neg.Expect(xmpptest.IsMessage("full"))
	// Headline to bare: all non-negative resources.
	a.Send("<message to='bob@%s' type='headline'><body>news</body></message>", domain)
	hi.Expect(xmpptest.IsMessage("news"))
	lo.Expect(xmpptest.IsMessage("news"))
	// Unknown user: service-unavailable (§8.5.1); groupchat to a user too.
	a.Send("<message to='nobody@%s' id='u1'><body>?</body></message>", domain)
	if r := a.Expect(func(el *xmlel.Element) bool { return el.Get("id") == "u1" }); xmpptest.ErrorCondition(r) != "service-unavailable" {
		t.Fatalf("unknown user: %s", r)
	}
	// IQ to an unknown user and to a known user without a handler answer alike.
	r1 := a.IQ("get", "nobody@"+domain, "<query xmlns='urn:example:none'/>")
	r2 := a.IQ("get", "bob@"+domain, "<query xmlns='urn:example:none'/>")
	if xmpptest.ErrorCondition(r1) != "service-unavailable" || xmpptest.ErrorCondition(r2) != "service-unavailable" {
		t.Fatalf("IQ errors differ: %s / %s", r1, r2)
	}
	// IQ to a full JID reaches that client, whose answer comes back.
	a.Send("<iq type='get' id='v1' to='bob@%s/lo'><query xmlns='jabber:iq:version'/></iq>", domain)
	req := lo.Expect(func(el *xmlel.Element) bool { return el.Get("id") == "v1" })
	lo.Send("<iq type='result' id='v1' to='%s'><query xmlns='jabber:iq:version'><name>x</name></query></iq>", req.Get("from"))
	if r := a.Expect(func(el *xmlel.Element) bool { return el.Get("id") == "v1" }); r.Get("type") != "result" || r.Get("from") != "bob@"+domain+"/lo" {
		t.Fatalf("IQ response: %s", r)
	}
	// Remote domains: no federation yet.
	a.Send("<message to='x@remote.test' id='r1'><body>?</body></message>")
	if r := a.Expect(func(el *xmlel.Element) bool { return el.Get("id") == "r1" }); xmpptest.ErrorCondition(r) != "remote-server-not-found" {
		t.Fatalf("remote: %s", r)
	}
}

func TestResourceConflictNewSessionWins(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	old := e.online("alice", "same")
	nu := e.login("alice", "same")
	if cond := old.WaitClosed(); cond != "conflict" {
		t.Fatalf("old session ended with %q, want conflict", cond)
	}
	nu.Send("<presence/>")
	nu.Expect(xmpptest.IsPresenceFrom(nu.JID, ""))
	if n := len(e.srv.Sessions("alice")); n != 1 {
		t.Fatalf("%d sessions", n)
	}
	// A generated resource when none is requested.
	g := e.login("alice", "")
	if g.JID == "" || g.JID == nu.JID {
		t.Fatalf("generated JID %q", g.JID)
	}
}
