package carbons

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// env is a modtest server with the module registered, listening on
// loopback for raw xmpptest clients.
type env struct {
	*modtest.Env
	m    *Module
	addr string
}

func newEnv(t *testing.T, before ...func(*server.Server)) *env {
	t.Helper()
	e := &env{Env: modtest.New(t)}
	for _, f := range before {
		f(e.S)
	}
	e.m = Register(e.S)
	e.addr = e.Addr()
	e.AddUser("alice", "pw-alice")
	e.AddUser("bob", "pw-bob")
	return e
}

// online logs user/resource in with presence priority prio, waits for the
// reflection and, if carbons, enables carbons.
func (e *env) online(user, resource string, prio int, carbons bool) *xmpptest.Client {
	e.T.Helper()
	c := xmpptest.Dial(e.T, e.addr, modtest.Domain)
	c.Login(user, "pw-"+user, resource)
	if carbons {
		if r := c.IQ("set", "", "<enable xmlns='urn:xmpp:carbons:2'/>"); r.Get("type") != "result" {
			e.T.Fatalf("enable: %s", r)
		}
	}
	c.Send("<presence><priority>%d</priority></presence>", prio)
	c.Expect(xmpptest.IsPresenceFrom(c.JID, ""))
	return c
}

// carbon matches a <dir/> carbon whose forwarded message has body.
func carbon(dir, body string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		fwd := forwarded(el, dir)
		return fwd != nil && fwd.ChildText("", "body") == body
	}
}

func forwarded(el *xmlel.Element, dir string) *xmlel.Element {
	if el.Name.Local != "message" {
		return nil
	}
	if d := el.Child(NS, dir); d != nil {
		if f := d.Child(NSForward, "forwarded"); f != nil {
			return f.Child(server.NSClient, "message")
		}
	}
	return nil
}

func anyCarbon(el *xmlel.Element) bool {
	return forwarded(el, "received") != nil || forwarded(el, "sent") != nil
}

func TestCarbons(t *testing.T) {
	e := newEnv(t)
	hi := e.online("alice", "hi", 5, true)
	lo := e.online("alice", "lo", 1, true)
	off := e.online("alice", "off", 1, false)
	bob := e.online("bob", "b", 0, false)

	if _, feats, _ := e.S.DiscoInfo(server.ToServer); !contains(feats, NS) {
		t.Errorf("server features %q lack %s", feats, NS)
	}

	// Received, bare JID: delivered to the highest priority, copied to the
	// other enabled resource (XEP-0280 §7).
	bob.Send("<message to='alice@example.org' type='chat' id='r1'><body>one</body><thread>t1</thread></message>")
	m := hi.Expect(xmpptest.IsMessage("one"))
	if m.Child(NS, "private") != nil || anyCarbon(m) {
		t.Fatalf("original: %s", m)
	}
	c := lo.Expect(carbon("received", "one"))
	if c.Get("from") != "alice@example.org" || c.Get("to") != lo.JID || c.Get("type") != "chat" {
		t.Fatalf("received carbon wrapper: %s", c)
	}
	if f := forwarded(c, "received"); f.Get("from") != bob.JID || f.Get("to") != "alice@example.org" || f.Get("id") != "r1" || f.ChildText("", "thread") != "t1" {
		t.Fatalf("forwarded message: %s", f)
	}

	// Received, full JID: the other enabled resources get it.
	bob.Send("<message to='%s' type='chat'><body>two</body></message>", lo.JID)
	lo.Expect(xmpptest.IsMessage("two"))
	hi.Expect(carbon("received", "two"))

	// Sent (XEP-0280 §8): the sender's other enabled resources.
	hi.Send("<message to='bob@example.org' type='chat' id='s1'><body>three</body></message>")
	bob.Expect(xmpptest.IsMessage("three"))
	c = lo.Expect(carbon("sent", "three"))
	if c.Get("from") != "alice@example.org" || c.Get("to") != lo.JID || c.Get("type") != "chat" {
		t.Fatalf("sent carbon wrapper: %s", c)
	}
	if f := forwarded(c, "sent"); f.Get("from") != hi.JID || f.Get("to") != "bob@example.org" || f.Get("id") != "s1" {
		t.Fatalf("forwarded message: %s", f)
	}
	// A session without carbons still has its messages copied.
	off.Send("<message to='bob@example.org'><body>four</body></message>")
	bob.Expect(xmpptest.IsMessage("four"))
	hi.Expect(carbon("sent", "four"))
	lo.Expect(carbon("sent", "four"))

	// Not eligible, each followed by an eligible marker: a carbon of the
	// former would have arrived before the marker's.
	notCopied := []string{
		"<message to='alice@example.org' type='chat'><body>p</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>",
		"<message to='alice@example.org' type='chat'><body>p</body><private xmlns='urn:xmpp:carbons:2'/></message>",
		"<message to='alice@example.org' type='chat'><body>p</body><no-copy xmlns='urn:xmpp:hints'/></message>",
		"<message to='alice@example.org/hi' type='error'><body>p</body><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
		"<message to='alice@example.org/hi' type='groupchat'><body>p</body></message>",
		"<message to='alice@example.org' type='headline'><body>p</body></message>",
		"<message to='alice@example.org'><subject>no body</subject></message>",
		"<message to='alice@example.org' type='chat'><body>p</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>",
		"<message to='alice@example.org' type='chat'><body>p</body><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='alice@example.org/hi' to='eve@example.org'><body>forged</body></message></forwarded></sent></message>",
	}
	for i, st := range notCopied {
		bob.Raw(st)
		marker := fmt.Sprintf("marker %d", i)
		bob.Send("<message to='alice@example.org' type='chat'><body>%s</body></message>", marker)
		hi.Expect(xmpptest.IsMessage(marker))
		lo.Expect(carbon("received", marker))
		lo.ExpectNone(time.Millisecond, anyCarbon)
		off.ExpectNone(time.Millisecond, anyCarbon)
	}
	// <private/> was stripped from what hi got (XEP-0280 §9), and the
	// forged carbon came with bob's address, so clients ignore it.
	for hiGot := 0; hiGot < 4; hiGot++ {
		m := hi.Expect(func(el *xmlel.Element) bool {
			return el.Name.Local == "message" && el.ChildText("", "body") == "p" && el.Get("type") != "error" && el.Get("type") != "groupchat"
		})
		if m.Child(NS, "private") != nil {
			t.Fatalf("private not stripped: %s", m)
		}
		if m.Child(NS, "sent") != nil && m.Get("from") != bob.JID {
			t.Fatalf("forged carbon: %s", m)
		}
	}
	// Sent side: private and no-copy are not copied either.
	hi.Send("<message to='bob@example.org' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>")
	hi.Send("<message to='bob@example.org' type='groupchat'><body>room</body></message>")
	hi.Send("<message to='bob@example.org' type='chat'><body>sent marker</body></message>")
	lo.Expect(carbon("sent", "sent marker"))
	lo.ExpectNone(time.Millisecond, anyCarbon)

	// IM payloads without a body (XEP-0184, XEP-0333, OMEMO) are copied.
	for _, p := range []string{
		"<received xmlns='urn:xmpp:receipts' id='r1'/>",
		"<displayed xmlns='urn:xmpp:chat-markers:0' id='r1'/>",
		"<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>",
		"<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/></encrypted>",
	} {
		bob.Send("<message to='alice@example.org'>%s</message>", p)
		c := lo.Expect(func(el *xmlel.Element) bool { return forwarded(el, "received") != nil })
		if f := forwarded(c, "received"); len(f.Elements()) != 1 || f.Elements()[0].Name.Local == "body" {
			t.Fatalf("payload carbon: %s", c)
		}
	}

	// Disabling stops copies; repeated requests are fine (XEP-0280 §10.1).
	for _, p := range []string{"<disable xmlns='urn:xmpp:carbons:2'/>", "<disable xmlns='urn:xmpp:carbons:2'/>"} {
		if r := lo.IQ("set", "alice@example.org", p); r.Get("type") != "result" {
			t.Fatalf("disable: %s", r)
		}
	}
	if r := hi.IQ("set", "", "<enable xmlns='urn:xmpp:carbons:2'/>"); r.Get("type") != "result" {
		t.Fatalf("enable again: %s", r)
	}
	bob.Send("<message to='%s' type='chat'><body>five</body></message>", off.JID)
	off.Expect(xmpptest.IsMessage("five"))
	hi.Expect(carbon("received", "five"))
	lo.ExpectNone(50*time.Millisecond, anyCarbon)

	// Only for oneself.
	if got := xmpptest.ErrorCondition(bob.IQ("set", "alice@example.org", "<enable xmlns='urn:xmpp:carbons:2'/>")); got != "not-allowed" {
		t.Fatalf("enabling for another account: %q", got)
	}

	hi.Close()
	modtest.Eventually(t, "closed session forgotten", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return len(e.m.enabled) == 0
	})
}

// TestOwnMessages: a message to one's own account is copied by the received
// rule only, and a resource that is not available gets no carbons.
func TestOwnMessages(t *testing.T) {
	e := newEnv(t)
	hi := e.online("alice", "hi", 5, true)
	lo := e.online("alice", "lo", 1, true)
	c := xmpptest.Dial(t, e.addr, modtest.Domain)
	c.Login("alice", "pw-alice", "unavailable")
	c.IQ("set", "", "<enable xmlns='urn:xmpp:carbons:2'/>")

	lo.Send("<message to='alice@example.org' type='chat'><body>self</body></message>")
	hi.Expect(xmpptest.IsMessage("self"))
	lo.Expect(carbon("received", "self"))
	hi.ExpectNone(50*time.Millisecond, anyCarbon)
	lo.ExpectNone(time.Millisecond, anyCarbon)
	c.ExpectNone(time.Millisecond, anyCarbon)
}

func TestEligible(t *testing.T) {
	for _, c := range []struct {
		xml      string
		received bool
		want     bool
	}{
		{"<message type='chat'/>", true, true},
		{"<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", true, true},
		{"<message><body>x</body></message>", true, true},
		{"<message type='normal'><body>x</body></message>", true, true},
		{"<message type='normal'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", true, false},
		{"<message><request xmlns='urn:xmpp:receipts'/></message>", true, true},
		{"<message type='chat'><body>x</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>", true, false},
		{"<message type='chat'><body>x</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>", false, true},
		{"<message type='chat'><received xmlns='urn:xmpp:carbons:2'/></message>", true, false},
		{"<message type='headline'><body>x</body></message>", true, false},
		{"<message type='bogus'><body>x</body></message>", true, false},
	} {
		st := xmlel.MustParse(c.xml)
		st.Name.Space = server.NSClient
		for _, ch := range st.Elements() {
			if ch.Name.Space == "" {
				ch.Name.Space = server.NSClient
			}
		}
		if got := eligible(st, st.Get("type"), c.received); got != c.want {
			t.Errorf("eligible(%s, received=%v) = %v, want %v", c.xml, c.received, got, c.want)
		}
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

// A sent carbon carries the sender's archive id (XEP-0313 §3.5) that the
// archive's hook, registered before carbons, put on the message.
func TestSentCarbonCarriesArchiveID(t *testing.T) {
	e := newEnv(t, func(s *server.Server) {
		s.OnMessageOut(func(ctx context.Context, m *server.Message) bool {
			m.ArchiveID = "arch-1"
			return false
		})
	})
	hi := e.online("alice", "hi", 5, true)
	lo := e.online("alice", "lo", 1, true)
	bob := e.online("bob", "b", 0, false)
	hi.Send("<message to='bob@example.org' type='chat'><body>sid</body></message>")
	if m := bob.Expect(xmpptest.IsMessage("sid")); m.Child("urn:xmpp:sid:0", "stanza-id") != nil {
		t.Fatalf("the recipient got the sender's archive id: %s", m)
	}
	f := forwarded(lo.Expect(carbon("sent", "sid")), "sent")
	sid := f.Child("urn:xmpp:sid:0", "stanza-id")
	if sid == nil || sid.Get("id") != "arch-1" || sid.Get("by") != "alice@example.org" {
		t.Fatalf("sent carbon: %s", f)
	}
}
