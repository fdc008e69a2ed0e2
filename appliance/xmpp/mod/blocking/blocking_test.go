package blocking

import (
	"context"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"mellium.im/xmpp/jid"
)

// env is a modtest server with the module registered, listening on
// loopback for raw xmpptest clients (which can wait for specific stanzas
// and assert that none arrives).
type env struct {
	*modtest.Env
	m    *Module
	addr string
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	e := &env{Env: modtest.New(t)}
	e.m = Register(e.S, opts...)
	e.addr = e.Addr()
	for _, u := range []string{"alice", "bob", "carol"} {
		e.AddUser(u, "pw-"+u)
	}
	return e
}

// login binds user/resource without sending presence.
func (e *env) login(user, resource string) *xmpptest.Client {
	e.T.Helper()
	c := xmpptest.Dial(e.T, e.addr, modtest.Domain)
	c.Login(user, "pw-"+user, resource)
	return c
}

// online logs in and sends initial presence, waiting for its reflection.
func (e *env) online(user, resource string) *xmpptest.Client {
	e.T.Helper()
	c := e.login(user, resource)
	c.Send("<presence/>")
	c.Expect(xmpptest.IsPresenceFrom(c.JID, ""))
	return c
}

func isPush(name string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		return el.Name.Local == "iq" && el.Get("type") == "set" && el.Child(NS, name) != nil
	}
}

func isMessage(el *xmlel.Element) bool { return el.Name.Local == "message" }

func items(el *xmlel.Element) []string {
	var out []string
	for _, it := range el.ChildrenNamed(NS, "item") {
		out = append(out, it.Get("jid"))
	}
	return out
}

func wantItems(t *testing.T, what string, el *xmlel.Element, want ...string) {
	t.Helper()
	got := items(el)
	if len(got) != len(want) {
		t.Fatalf("%s: items %q, want %q (%s)", what, got, want, el)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: items %q, want %q (%s)", what, got, want, el)
		}
	}
}

func wantBlockedError(t *testing.T, el *xmlel.Element) {
	t.Helper()
	if xmpptest.ErrorCondition(el) != "not-acceptable" || el.Child("", "error").Child(NSErrors, "blocked") == nil ||
		el.Child("", "error").Get("type") != "cancel" {
		t.Fatalf("want not-acceptable with <blocked/>, got %s", el)
	}
}

func TestCommands(t *testing.T) {
	e := newEnv(t, MaxItems(4))
	a1 := e.login("alice", "a1")
	a2 := e.login("alice", "a2")
	bob := e.login("bob", "b")

	if _, feats, _ := e.S.DiscoInfo(server.ToServer); !contains(feats, NS) {
		t.Errorf("server features %q lack %s", feats, NS)
	}

	r := a1.IQ("get", "", "<blocklist xmlns='urn:xmpp:blocking'/>")
	if r.Get("type") != "result" || r.Child(NS, "blocklist") == nil {
		t.Fatalf("empty blocklist: %s", r)
	}
	wantItems(t, "empty blocklist", r.Child(NS, "blocklist"))

	r = a1.IQ("set", "", "<block xmlns='urn:xmpp:blocking'><item jid='bob@example.org'/><item jid='Example.NET'/>"+
		"<item jid='CAROL@example.org/Phone'/><item jid='bob@example.org'/></block>")
	if r.Get("type") != "result" {
		t.Fatalf("block: %s", r)
	}
	push := a1.Expect(isPush("block"))
	if push.Get("to") != a1.JID || push.Get("id") == "" {
		t.Fatalf("push: %s", push)
	}
	wantItems(t, "block push", push.Child(NS, "block"), "bob@example.org", "example.net", "carol@example.org/Phone")
	// a2 never asked for the list: no push (XEP-0191 §3.3).
	a2.ExpectNone(100*time.Millisecond, isPush("block"))

	r = a2.IQ("get", "alice@example.org", "<blocklist xmlns='urn:xmpp:blocking'/>")
	wantItems(t, "blocklist", r.Child(NS, "blocklist"), "bob@example.org", "carol@example.org/Phone", "example.net")

	// Errors.
	for _, c := range []struct{ payload, cond string }{
		{"<block xmlns='urn:xmpp:blocking'/>", "bad-request"},
		{"<block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block>", "jid-malformed"},
		{"<block xmlns='urn:xmpp:blocking'><item/></block>", "jid-malformed"},
		{"<block xmlns='urn:xmpp:blocking'><item jid='x@example.net'/><item jid='y@example.net'/></block>", "policy-violation"},
	} {
		if got := xmpptest.ErrorCondition(a1.IQ("set", "", c.payload)); got != c.cond {
			t.Errorf("%s: got %q, want %s", c.payload, got, c.cond)
		}
	}
	if got := xmpptest.ErrorCondition(bob.IQ("get", "alice@example.org", "<blocklist xmlns='urn:xmpp:blocking'/>")); got != "service-unavailable" {
		t.Errorf("bob reading alice's list: %q", got)
	}
	if got := xmpptest.ErrorCondition(bob.IQ("set", "alice@example.org", "<unblock xmlns='urn:xmpp:blocking'/>")); got != "service-unavailable" {
		t.Errorf("bob changing alice's list: %q", got)
	}

	// Both resources asked now: both get the pushes.
	r = a1.IQ("set", "", "<unblock xmlns='urn:xmpp:blocking'><item jid='bob@example.org'/><item jid='nobody@example.org'/></unblock>")
	if r.Get("type") != "result" {
		t.Fatalf("unblock: %s", r)
	}
	for _, c := range []*xmpptest.Client{a1, a2} {
		wantItems(t, "unblock push", c.Expect(isPush("unblock")).Child(NS, "unblock"), "bob@example.org", "nobody@example.org")
	}
	r = a1.IQ("get", "", "<blocklist xmlns='urn:xmpp:blocking'/>")
	wantItems(t, "after unblock", r.Child(NS, "blocklist"), "carol@example.org/Phone", "example.net")

	// Unblock all: an empty push.
	if r := a1.IQ("set", "", "<unblock xmlns='urn:xmpp:blocking'/>"); r.Get("type") != "result" {
		t.Fatalf("unblock all: %s", r)
	}
	for _, c := range []*xmpptest.Client{a1, a2} {
		wantItems(t, "unblock-all push", c.Expect(isPush("unblock")).Child(NS, "unblock"))
	}
	wantItems(t, "after unblock all", a1.IQ("get", "", "<blocklist xmlns='urn:xmpp:blocking'/>").Child(NS, "blocklist"))

	// Ended sessions are forgotten.
	a1.Close()
	a2.Close()
	modtest.Eventually(t, "interested sessions forgotten", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return len(e.m.interested) == 0
	})
}

func TestEnforcement(t *testing.T) {
	e := newEnv(t)
	e.Subscribe("alice", "bob@example.org", "both")
	e.Subscribe("bob", "alice@example.org", "both")
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	alice.Expect(xmpptest.IsPresenceFrom(bob.JID, ""))
	bob.Expect(xmpptest.IsPresenceFrom(alice.JID, ""))
	carol := e.online("carol", "c")

	alice.IQ("get", "", "<blocklist xmlns='urn:xmpp:blocking'/>")
	alice.IQ("set", "", "<block xmlns='urn:xmpp:blocking'><item jid='bob@example.org'/></block>")
	alice.Expect(isPush("block"))
	// XEP-0191 §3.3: the contact sees the user go offline.
	bob.Expect(xmpptest.IsPresenceFrom(alice.JID, "unavailable"))

	// Inbound: messages dropped silently, IQ get answered as if offline,
	// presence not delivered.
	bob.Send("<message to='alice@example.org' type='chat' id='m1'><body>hello?</body></message>")
	bob.Send("<message to='%s' type='chat' id='m2'><body>hello you?</body></message>", alice.JID)
	r := bob.IQ("get", alice.JID, "<query xmlns='jabber:iq:version'/>")
	if xmpptest.ErrorCondition(r) != "service-unavailable" || r.Get("from") != alice.JID {
		t.Fatalf("IQ to the blocking user: %s", r)
	}
	bob.Send("<presence><show>away</show></presence>")
	bob.Expect(xmpptest.IsPresenceFrom(bob.JID, "")) // own reflection
	carol.Send("<message to='alice@example.org' type='chat'><body>from carol</body></message>")
	alice.Expect(xmpptest.IsMessage("from carol"))
	alice.ExpectNone(50*time.Millisecond, func(el *xmlel.Element) bool {
		return el.Get("from") == bob.JID || el.Get("from") == "bob@example.org"
	})
	bob.ExpectNone(50*time.Millisecond, isMessage)

	// Outbound: messages and IQs refused with <blocked/>, presence skipped.
	alice.Send("<message to='bob@example.org' type='chat' id='o1'><body>psst</body></message>")
	m := alice.Expect(isMessage)
	if m.Get("type") != "error" || m.Get("id") != "o1" || m.Get("from") != "bob@example.org" || m.ChildText("", "body") != "psst" {
		t.Fatalf("bounce: %s", m)
	}
	wantBlockedError(t, m)
	wantBlockedError(t, alice.IQ("get", bob.JID, "<query xmlns='jabber:iq:version'/>"))
	alice.Send("<presence><show>dnd</show></presence>")
	alice.Expect(xmpptest.IsPresenceFrom(alice.JID, ""))
	alice.Send("<presence to='%s'/>", bob.JID) // directed presence too
	carol.Send("<message to='bob@example.org' type='chat'><body>marker</body></message>")
	bob.Expect(xmpptest.IsMessage("marker"))
	bob.ExpectNone(50*time.Millisecond, func(el *xmlel.Element) bool { return el.Get("from") == alice.JID })

	// Unblocking sends the user's current presence (XEP-0191 §3.4) and lets
	// stanzas through again.
	alice.IQ("set", "", "<unblock xmlns='urn:xmpp:blocking'><item jid='bob@example.org'/></unblock>")
	p := bob.Expect(xmpptest.IsPresenceFrom(alice.JID, ""))
	if p.ChildText("", "show") != "dnd" {
		t.Fatalf("presence after unblock: %s", p)
	}
	bob.Send("<message to='alice@example.org' type='chat'><body>again</body></message>")
	alice.Expect(xmpptest.IsMessage("again"))
	alice.Send("<message to='bob@example.org' type='chat'><body>yes</body></message>")
	bob.Expect(xmpptest.IsMessage("yes"))

	// A full-JID entry blocks that resource only.
	alice.IQ("set", "", "<block xmlns='urn:xmpp:blocking'><item jid='"+carol.JID+"'/></block>")
	carol.Send("<message to='%s' type='chat'><body>blocked resource</body></message>", alice.JID)
	carol2 := e.online("carol", "c2")
	carol2.Send("<message to='%s' type='chat'><body>other resource</body></message>", alice.JID)
	alice.Expect(xmpptest.IsMessage("other resource"))
	alice.ExpectNone(50*time.Millisecond, xmpptest.IsMessage("blocked resource"))

	// A domain entry blocks everyone there (the server's own JID excepted).
	alice.IQ("set", "", "<block xmlns='urn:xmpp:blocking'><item jid='example.org'/></block>")
	bob.Send("<message to='alice@example.org' type='chat'><body>domain</body></message>")
	carol2.Send("<message to='alice@example.org' type='chat'><body>domain 2</body></message>")
	wantBlockedError(t, alice.IQ("get", carol2.JID, "<query xmlns='jabber:iq:version'/>"))
	if r := alice.IQ("get", "example.org", "<query xmlns='jabber:iq:version'/>"); xmpptest.ErrorCondition(r) == "not-acceptable" {
		t.Fatalf("the server itself is never blocked: %s", r)
	}
	// Messages to oneself are never blocked.
	alice.Send("<message to='alice@example.org' type='chat'><body>note to self</body></message>")
	alice.Expect(xmpptest.IsMessage("note to self"))
	alice.ExpectNone(50*time.Millisecond, func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && el.Get("type") != "error"
	})
}

func TestMatches(t *testing.T) {
	l := blockList{"a@example.com": {}, "b@example.com/r": {}, "example.net": {}, "example.org/svc": {}}
	for s, want := range map[string]bool{
		"a@example.com":          true,
		"a@example.com/x":        true,
		"b@example.com":          false,
		"b@example.com/r":        true,
		"b@example.com/s":        false,
		"example.com":            false,
		"example.net":            true,
		"u@example.net/r":        true,
		"muc.example.net":        true,
		"u@deep.muc.example.net": true,
		"example.network":        false,
		"notexample.net":         false,
		"example.org":            false,
		"example.org/svc":        true,
		"u@example.org/svc":      false,
	} {
		if got := l.matches(jid.MustParse(s)); got != want {
			t.Errorf("matches(%s) = %v, want %v", s, got, want)
		}
	}
	if (blockList(nil)).matches(jid.MustParse("a@b")) {
		t.Error("empty list matched")
	}
}

func TestCache(t *testing.T) {
	e := newEnv(t, CacheSize(2))
	ctx := context.Background()
	if _, err := e.Store.Block(ctx, "alice", []string{"bob@example.org"}, 0); err != nil {
		t.Fatal(err)
	}
	bob := jid.MustParse("bob@example.org/x")
	if !e.m.Blocks(ctx, "alice", bob) || e.m.Blocks(ctx, "bob", bob) || e.m.Blocks(ctx, "nobody", bob) {
		t.Fatal("Blocks")
	}
	if n := e.m.cache.lru.Len(); n != 2 {
		t.Fatalf("cache holds %d entries, want the limit 2", n)
	}
	// Store changes behind the module's back are seen after eviction
	// ("alice" was least recently used and is gone).
	if _, err := e.Store.UnblockAll(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if e.m.Blocks(ctx, "alice", bob) {
		t.Fatal("stale entry after eviction")
	}
	// A load that raced with an invalidation is not cached.
	gen := e.m.cache.generation()
	e.m.cache.invalidate("carol")
	e.m.cache.put("carol", blockList{"x@y": {}}, gen)
	if _, ok := e.m.cache.get("carol"); ok {
		t.Fatal("stale load cached")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
