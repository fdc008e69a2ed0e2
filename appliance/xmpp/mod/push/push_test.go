package push

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// env is a modtest server with the module registered, listening on
// loopback for raw xmpptest clients. "app" plays the XMPP Push Service.
type env struct {
	*modtest.Env
	m    *Module
	addr string
}

func newEnv(t *testing.T, opts ...func(*env) Option) *env {
	t.Helper()
	e := &env{Env: modtest.New(t)}
	var o []Option
	for _, f := range opts {
		o = append(o, f(e))
	}
	e.m = Register(e.S, o...)
	e.addr = e.Addr()
	for _, u := range []string{"alice", "bob", "app"} {
		e.AddUser(u, "pw-"+u)
	}
	return e
}

func opt(o Option) func(*env) Option { return func(*env) Option { return o } }

func (e *env) login(user, resource string) *xmpptest.Client {
	e.T.Helper()
	c := xmpptest.Dial(e.T, e.addr, modtest.Domain)
	c.Login(user, "pw-"+user, resource)
	return c
}

// offline closes c and waits until the server has unbound it.
func (e *env) offline(c *xmpptest.Client, user string) {
	e.T.Helper()
	c.Close()
	modtest.Eventually(e.T, user+" offline", func() bool { return len(e.S.Sessions(user)) == 0 })
}

const (
	appJID  = "app@example.org/push"
	options = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>" + FormPublishOptions +
		"</value></field><field var='secret'><value>s3cr3t</value></field></x>"
)

// enable registers alice's device n with the app and goes offline.
func (e *env) enable(nodes ...string) {
	e.T.Helper()
	alice := e.login("alice", "phone")
	for _, n := range nodes {
		r := alice.IQ("set", "", "<enable xmlns='urn:xmpp:push:0' jid='"+appJID+"' node='"+n+"'>"+options+"</enable>")
		if r.Get("type") != "result" {
			e.T.Fatalf("enable: %s", r)
		}
	}
	e.offline(alice, "alice")
}

func isNotification(el *xmlel.Element) bool {
	return el.Name.Local == "iq" && el.Get("type") == "set" && el.Child(NSPubSub, "pubsub") != nil
}

// summary checks a notification's addressing and returns its node and
// summary fields.
func summary(t *testing.T, iq *xmlel.Element) (node string, fields map[string]string) {
	t.Helper()
	if iq.Get("from") != "alice@example.org" || iq.Get("to") != appJID || iq.Get("id") == "" {
		t.Fatalf("notification addressing: %s", iq)
	}
	ps := iq.Child(NSPubSub, "pubsub")
	pub := ps.Child(NSPubSub, "publish")
	form := pub.Child(NSPubSub, "item").Child(NS, "notification").Child(NSData, "x")
	if form == nil || form.Get("type") != "form" {
		t.Fatalf("no summary form: %s", iq)
	}
	fields = make(map[string]string)
	for _, f := range form.ChildrenNamed(NSData, "field") {
		fields[f.Get("var")] = f.ChildText(NSData, "value")
	}
	if fields["FORM_TYPE"] != FormSummary {
		t.Fatalf("FORM_TYPE: %s", iq)
	}
	po := ps.Child(NSPubSub, "publish-options")
	if po == nil || formType(po.Child(NSData, "x")) != FormPublishOptions || !strings.Contains(po.String(), "s3cr3t") {
		t.Fatalf("publish-options: %s", iq)
	}
	return pub.Get("node"), fields
}

// answer sends the app server's result for a notification.
func answer(app *xmpptest.Client, iq *xmlel.Element) {
	app.Send("<iq type='result' id='%s' to='%s'/>", iq.Get("id"), iq.Get("from"))
}

func TestNotify(t *testing.T) {
	e := newEnv(t, opt(Interval(500*time.Millisecond)))
	if _, feats, _ := e.S.DiscoInfo(server.ToAccount); !contains(feats, NS) {
		t.Errorf("account features %q lack %s", feats, NS)
	}
	app := e.login("app", "push")
	bob := e.login("bob", "b")
	e.enable("n1")

	// A message stored offline is notified, with the count only.
	bob.Send("<message to='alice@example.org' type='chat'><body>hello</body></message>")
	n := app.Expect(isNotification)
	node, f := summary(t, n)
	if node != "n1" || f["message-count"] != "1" || len(f) != 2 {
		t.Fatalf("summary: node %q fields %v", node, f)
	}
	answer(app, n)

	// Rate limit: two more within the interval are announced together at
	// its end.
	bob.Send("<message to='alice@example.org' type='chat'><body>2</body></message>")
	bob.Send("<message to='alice@example.org' type='chat'><body>3</body></message>")
	app.ExpectNone(300*time.Millisecond, isNotification)
	n = app.Expect(isNotification)
	if _, f := summary(t, n); f["message-count"] != "3" {
		t.Fatalf("trailing notification: %v", f)
	}
	app.ExpectNone(700*time.Millisecond, isNotification)
	// After the interval (server clock), the next one goes out at once.
	e.Clock.Advance(time.Second)
	bob.Send("<message to='alice@example.org' type='chat'><body>4</body></message>")
	if _, f := summary(t, app.Expect(isNotification)); f["message-count"] != "4" {
		t.Fatalf("fourth: %v", f)
	}

	// Not worth a notification: chat states, errors, headlines.
	bob.Send("<message to='alice@example.org' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	bob.Send("<message to='alice@example.org' type='headline'><body>news</body></message>")
	bob.Send("<message to='alice@example.org' type='chat'><x xmlns='urn:example'/></message>")
	app.ExpectNone(200*time.Millisecond, isNotification)

	// Coming online resets the count; a message delivered to a connected
	// session is not notified.
	alice := e.login("alice", "phone")
	alice.Send("<presence/>")
	alice.Expect(xmpptest.IsPresenceFrom(alice.JID, ""))
	bob.Send("<message to='alice@example.org' type='chat'><body>live</body></message>")
	alice.Expect(xmpptest.IsMessage("live"))
	app.ExpectNone(200*time.Millisecond, isNotification)
	e.offline(alice, "alice")
	e.Clock.Advance(time.Second)
	bob.Send("<message to='alice@example.org' type='chat'><body>later</body></message>")
	if _, f := summary(t, app.Expect(isNotification)); f["message-count"] != "1" {
		t.Fatalf("after coming online: %v", f)
	}

	// Disabling by service JID alone removes every node of it.
	alice = e.login("alice", "phone")
	alice.IQ("set", "", "<enable xmlns='urn:xmpp:push:0' jid='"+appJID+"' node='n2'/>")
	if r := alice.IQ("set", "", "<disable xmlns='urn:xmpp:push:0' jid='"+appJID+"'/>"); r.Get("type") != "result" {
		t.Fatalf("disable: %s", r)
	}
	if regs, _ := e.Store.PushRegistrations(context.Background(), "alice"); len(regs) != 0 {
		t.Fatalf("left after disable: %v", regs)
	}
	e.offline(alice, "alice")
	e.Clock.Advance(time.Second)
	bob.Send("<message to='alice@example.org' type='chat'><body>nobody hears</body></message>")
	app.ExpectNone(300*time.Millisecond, isNotification)
}

func TestSenderAndBody(t *testing.T) {
	e := newEnv(t, opt(IncludeSenderAndBody(true)))
	app := e.login("app", "push")
	bob := e.login("bob", "b")
	e.enable("n1", "n2")
	long := strings.Repeat("é", MaxBodyBytes) // 2 bytes each
	bob.Send("<message to='alice@example.org' type='chat'><body>%s</body></message>", long)
	nodes := map[string]bool{}
	for range 2 {
		node, f := summary(t, app.Expect(isNotification))
		nodes[node] = true
		if f["last-message-sender"] != "bob@example.org" || f["last-message-body"] != long[:MaxBodyBytes] || f["message-count"] != "1" {
			t.Fatalf("fields: %v", f)
		}
	}
	if !nodes["n1"] || !nodes["n2"] {
		t.Fatalf("nodes notified: %v", nodes)
	}
}

// TestErrorDisables: with a Requester, an error answer disables the
// registration (XEP-0357 §7.1) unless it is transient. The test requester
// is Server.Request, which sends from the server's JID.
func TestErrorDisables(t *testing.T) {
	e := newEnv(t, opt(Interval(time.Millisecond)), func(e *env) Option {
		return WithRequester(func(ctx context.Context, iq *xmlel.Element) (*xmlel.Element, error) {
			return e.S.Request(ctx, iq)
		})
	})
	app := e.login("app", "push")
	bob := e.login("bob", "b")
	e.enable("n1", "n2")
	ctx := context.Background()

	reply := func(cond, typ string) {
		n := app.Expect(isNotification)
		app.Send("<iq type='error' id='%s' to='%s'><error type='%s'><%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
			n.Get("id"), n.Get("from"), typ, cond)
	}
	bob.Send("<message to='alice@example.org' type='chat'><body>1</body></message>")
	reply("resource-constraint", "wait")
	reply("item-not-found", "cancel")
	modtest.Eventually(t, "registration disabled", func() bool {
		regs, _ := e.Store.PushRegistrations(ctx, "alice")
		return len(regs) == 1
	})
	e.Clock.Advance(time.Second)
	bob.Send("<message to='alice@example.org' type='chat'><body>2</body></message>")
	n := app.Expect(isNotification)
	if node := n.Child(NSPubSub, "pubsub").Child(NSPubSub, "publish").Get("node"); node != "n1" && node != "n2" {
		t.Fatalf("node %q", node)
	}
	app.Send("<iq type='result' id='%s' to='%s'/>", n.Get("id"), n.Get("from"))
	app.ExpectNone(200*time.Millisecond, isNotification)
	if regs, _ := e.Store.PushRegistrations(ctx, "alice"); len(regs) != 1 {
		t.Fatalf("registrations: %v", regs)
	}
}

func TestEnableErrors(t *testing.T) {
	e := newEnv(t, opt(MaxRegistrations(2)))
	alice := e.login("alice", "phone")
	bob := e.login("bob", "b")
	for _, c := range []struct{ payload, cond string }{
		{"<enable xmlns='urn:xmpp:push:0' node='n'/>", "bad-request"},
		{"<enable xmlns='urn:xmpp:push:0' jid='a@b@c' node='n'/>", "jid-malformed"},
		{"<enable xmlns='urn:xmpp:push:0' jid='push.example.net'/>", "bad-request"},
		{"<enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='n'><x xmlns='jabber:x:data' type='submit'/></enable>", "bad-request"},
		{"<enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='n'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>" +
			FormPublishOptions + "</value></field><field var='k'><value>" + strings.Repeat("x", MaxOptionsBytes) + "</value></field></x></enable>", "not-acceptable"},
		{"<disable xmlns='urn:xmpp:push:0'/>", "bad-request"},
		{"<enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='1'/>", ""},
		{"<enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='2'/>", ""},
		{"<enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='2'/>", ""},
		{"<enable xmlns='urn:xmpp:push:0' jid='push.example.net' node='3'/>", "policy-violation"},
		{"<disable xmlns='urn:xmpp:push:0' jid='push.example.net' node='3'/>", ""},
		{"<disable xmlns='urn:xmpp:push:0' jid='Push.Example.NET' node='1'/>", ""},
	} {
		if got := xmpptest.ErrorCondition(alice.IQ("set", "", c.payload)); got != c.cond {
			t.Errorf("%.80s: got %q, want %q", c.payload, got, c.cond)
		}
	}
	if regs, _ := e.Store.PushRegistrations(context.Background(), "alice"); len(regs) != 1 || regs[0].Node != "2" {
		t.Fatalf("registrations: %v", regs)
	}
	if got := xmpptest.ErrorCondition(bob.IQ("set", "alice@example.org", "<enable xmlns='urn:xmpp:push:0' jid='x.example' node='n'/>")); got != "forbidden" {
		t.Fatalf("enable for another account: %q", got)
	}
}

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{{"abc", 5, "abc"}, {"abc", 2, "ab"}, {"aé", 2, "a"}, {"aé", 3, "aé"}, {"€", 1, ""}} {
		if got := truncate(c.s, c.n); got != c.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
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

// A message for a phone whose connection dropped (a hibernated XEP-0198
// session) is notified, and is delivered once the phone resumes.
func TestNotifyHibernated(t *testing.T) {
	e := newEnv(t)
	app := e.login("app", "push")
	bob := e.login("bob", "b")
	alice := e.login("alice", "phone")
	if r := alice.IQ("set", "", "<enable xmlns='urn:xmpp:push:0' jid='"+appJID+"' node='h1'>"+options+"</enable>"); r.Get("type") != "result" {
		t.Fatalf("enable: %s", r)
	}
	id := alice.EnableSM().Get("id")
	alice.Send("<presence/>")
	alice.Expect(xmpptest.IsPresenceFrom(alice.JID, ""))
	alice.Close()
	modtest.Eventually(t, "alice hibernated", func() bool {
		s := e.S.Sessions("alice")
		return len(s) == 1 && s[0].Hibernated()
	})
	bob.Send("<message to='alice@example.org' type='chat'><body>wake up</body></message>")
	node, f := summary(t, app.Expect(isNotification))
	if node != "h1" || f["message-count"] != "1" {
		t.Fatalf("summary: node %q fields %v", node, f)
	}
	back := xmpptest.Dial(t, e.addr, modtest.Domain)
	if res := back.LoginResume("alice", "pw-alice", id, 1); res.Name.Local != "resumed" {
		t.Fatalf("resume: %s", res)
	}
	back.Expect(xmpptest.IsMessage("wake up"))
}
