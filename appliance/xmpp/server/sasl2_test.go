package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

const (
	agentPhone  = "d4565fa7-4d72-4749-b3d3-740edbf87770"
	agentLaptop = "0d9e1c6a-1d1a-4d2b-9f57-8a3f5b4f0c11"
	smEnable    = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
)

func bind2Req(tag, inline string) string {
	return "<bind xmlns='urn:xmpp:bind:0'><tag>" + tag + "</tag>" + inline + "</bind>"
}

func isFeatures(e *xmlel.Element) bool { return e.Name.Local == "features" }

func saslCondition(el *xmlel.Element) string {
	for _, c := range el.Elements() {
		if c.Name.Space == xmpptest.NSSASL {
			return c.Name.Local
		}
	}
	return ""
}

// expectSuccess fails the test unless el is a SASL2 <success/>.
func expectSASL2Success(t *testing.T, el *xmlel.Element) *xmlel.Element {
	t.Helper()
	if el.Name.Space != xmpptest.NSSASL2 || el.Name.Local != "success" {
		t.Fatalf("want SASL2 success, got %s", el)
	}
	return el
}

// expectSASL2Failure fails the test unless el is a SASL2 <failure/> with
// condition cond.
func expectSASL2Failure(t *testing.T, el *xmlel.Element, cond string) {
	t.Helper()
	if el.Name.Space != xmpptest.NSSASL2 || el.Name.Local != "failure" || saslCondition(el) != cond {
		t.Fatalf("want SASL2 failure %s, got %s", cond, el)
	}
}

// scramLogin authenticates user with SASL2 SCRAM-SHA-256 on a new STARTTLS
// connection, with the given agent and inline requests.
func (e *env) sasl2(user, agent, inline string) (*xmpptest.Client, *xmlel.Element) {
	e.t.Helper()
	c, _ := xmpptest.DialSASL2(e.t, e.addr, domain, 0)
	el := c.AuthSASL2(xmpptest.SASL2{Mechanism: "SCRAM-SHA-256", User: user, Password: "pw-" + user,
		AgentID: agent, Software: "Conversations", Device: "Test", Inline: inline})
	return c, expectSASL2Success(e.t, el)
}

// fastLogin authenticates with an HT mechanism and token on a new
// connection and returns the client and the outcome.
func (e *env) fastLogin(user, agent, mech, token, inline string) (*xmpptest.Client, *xmlel.Element) {
	e.t.Helper()
	c, _ := xmpptest.DialSASL2(e.t, e.addr, domain, 0)
	return c, c.AuthSASL2(xmpptest.SASL2{Mechanism: mech, User: user, Token: token, AgentID: agent, Software: "Monal", Inline: inline})
}

func TestSASL2Advertised(t *testing.T) {
	e := newEnv(t, server.Limits{})
	c := xmpptest.Dial(t, e.addr, domain)
	if f := c.OpenStream(); f.Child(xmpptest.NSSASL2, "authentication") != nil {
		t.Fatalf("SASL2 offered before TLS: %s", f)
	}
	for _, tc := range []struct {
		maxTLS uint16
		fast   []string
		plus   bool
	}{
		{0, []string{auth.MechHTExpr, auth.MechHTEndp, auth.MechHTNone}, true},
		{tls.VersionTLS12, []string{auth.MechHTEndp, auth.MechHTUniq, auth.MechHTNone}, true},
	} {
		_, f := xmpptest.DialSASL2(t, e.addr, domain, tc.maxTLS)
		mechs, fast := xmpptest.SASL2Mechanisms(f)
		classic := f.Child(auth.NSSASL, "mechanisms")
		if classic == nil {
			t.Fatalf("classic SASL missing: %s", f)
		}
		var classicMechs []string
		for _, m := range classic.ChildrenNamed("", "mechanism") {
			classicMechs = append(classicMechs, m.Text())
		}
		if !slices.Equal(mechs, classicMechs) || !slices.Contains(mechs, "SCRAM-SHA-256-PLUS") {
			t.Errorf("TLS %x: SASL2 mechanisms %v, classic %v", tc.maxTLS, mechs, classicMechs)
		}
		if !slices.Equal(fast, tc.fast) {
			t.Errorf("TLS %x: FAST mechanisms %v, want %v", tc.maxTLS, fast, tc.fast)
		}
		if len(f.ChildrenNamed(auth.NSChannelBinding, "sasl-channel-binding")) != 1 {
			t.Errorf("XEP-0440 list not listed once: %s", f)
		}
		inline := f.Child(xmpptest.NSSASL2, "authentication").Child(xmpptest.NSSASL2, "inline")
		if inline == nil || inline.Child(server.NSSM, "sm") == nil {
			t.Fatalf("inline resumption not advertised: %s", f)
		}
		var vars []string
		for _, fe := range inline.Child(xmpptest.NSBind2, "bind").Child(xmpptest.NSBind2, "inline").ChildrenNamed(xmpptest.NSBind2, "feature") {
			vars = append(vars, fe.Get("var"))
		}
		if !slices.Equal(vars, []string{server.NSSM, server.NSCSI}) {
			t.Errorf("Bind 2 inline features %v", vars)
		}
	}
}

// SASL2 + Bind 2 + inline stream management in one round trip, with a
// resource that is stable per user agent.
func TestSASL2Bind2InlineSM(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")

	b, succ := e.sasl2("bob", agentPhone, bind2Req("Conversations", smEnable))
	authz := succ.ChildText(xmpptest.NSSASL2, "authorization-identifier")
	if !strings.HasPrefix(authz, "bob@"+domain+"/Conversations.") || len(authz) != len("bob@"+domain+"/Conversations.")+8 || b.JID != authz {
		t.Fatalf("authorization-identifier %q (JID %q)", authz, b.JID)
	}
	bound := succ.Child(xmpptest.NSBind2, "bound")
	if bound == nil {
		t.Fatalf("no <bound/>: %s", succ)
	}
	enabled := bound.Child(server.NSSM, "enabled")
	if enabled == nil || enabled.Get("id") == "" || enabled.Get("resume") != "true" {
		t.Fatalf("no inline <enabled/>: %s", succ)
	}
	// Post-bind features follow without a stream restart.
	f := b.Expect(isFeatures)
	if f.Child("urn:ietf:params:xml:ns:xmpp-bind", "bind") != nil || f.Child(xmpptest.NSSASL2, "authentication") != nil ||
		f.Child(server.NSSM, "sm") != nil || f.Child(server.NSCSI, "csi") == nil {
		t.Fatalf("features after Bind 2: %s", f)
	}
	if s := e.srv.Sessions("bob"); len(s) != 1 || s[0].JID().String() != authz {
		t.Fatalf("sessions: %v", s)
	}

	// Stream management counts from <success/>.
	b.Send("<presence/>")
	b.Expect(xmpptest.IsPresenceFrom(b.JID, ""))
	a.Send("<message to='%s' type='chat'><body>hi bob</body></message>", b.JID)
	b.Expect(xmpptest.IsMessage("hi bob"))
	b.Send("<r xmlns='urn:xmpp:sm:3'/>")
	if ack := b.Expect(isSM("a")); ack.Get("h") != "1" {
		t.Fatalf("server h = %s, want 1", ack.Get("h"))
	}
	b.Send("<a xmlns='urn:xmpp:sm:3' h='2'/>") // presence reflection + message
	if r := b.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); r.Get("type") != "result" {
		t.Fatalf("roster after ack: %s", r)
	}

	// The same installation gets the same resource and replaces its old
	// session; another installation gets another one.
	b2, succ2 := e.sasl2("bob", agentPhone, bind2Req("Conversations", ""))
	if b2.JID != b.JID {
		t.Fatalf("resource not stable: %q then %q", b.JID, b2.JID)
	}
	if cond := b.WaitClosed(); cond != "conflict" {
		t.Fatalf("old session closed with %q", cond)
	}
	if succ2.Child(xmpptest.NSBind2, "bound").Child(server.NSSM, "enabled") != nil {
		t.Fatalf("SM enabled without asking: %s", succ2)
	}
	b2.Expect(func(e *xmlel.Element) bool { return isFeatures(e) && e.Child(server.NSSM, "sm") != nil })
	b3, _ := e.sasl2("bob", agentLaptop, bind2Req("Conversations", "<enable xmlns='urn:xmpp:sm:3'/>"))
	if b3.JID == b2.JID || !strings.HasPrefix(b3.JID, "bob@"+domain+"/Conversations.") {
		t.Fatalf("second device got %q (first %q)", b3.JID, b2.JID)
	}
	if n := len(e.srv.Sessions("bob")); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	// Exactly one stanza was counted since <success/>: acknowledging two
	// is handled-count-too-high (XEP-0198 §4).
	b3.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	b3.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	b3.Send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
	if cond := b3.WaitClosed(); cond != "undefined-condition" {
		t.Fatalf("h=2 after one stanza: %q", cond)
	}
}

// Without Bind 2 the server sends fresh features and the client binds the
// classic way, on the same stream.
func TestSASL2ThenClassicBind(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	c, _ := xmpptest.DialSASL2(t, e.addr, domain, 0)
	succ := expectSASL2Success(t, c.AuthSASL2(xmpptest.SASL2{Mechanism: "SCRAM-SHA-256-PLUS", User: "alice", Password: "pw-alice", AgentID: agentPhone}))
	if got := succ.ChildText(xmpptest.NSSASL2, "authorization-identifier"); got != "alice@"+domain {
		t.Fatalf("authorization-identifier %q", got)
	}
	f := c.Expect(isFeatures)
	if f.Child("urn:ietf:params:xml:ns:xmpp-bind", "bind") == nil || f.Child(server.NSSM, "sm") == nil ||
		f.Child(xmpptest.NSSASL2, "authentication") != nil || f.Child(auth.NSSASL, "mechanisms") != nil {
		t.Fatalf("features after SASL2: %s", f)
	}
	c.Bind("laptop")
	if c.JID != "alice@"+domain+"/laptop" {
		t.Fatalf("bound %q", c.JID)
	}
	if r := c.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); r.Get("type") != "result" {
		t.Fatalf("roster: %s", r)
	}
}

func TestSASL2Failures(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	c, _ := xmpptest.DialSASL2(t, e.addr, domain, 0)
	// A failed attempt ignores its inline requests and may be retried.
	el := c.AuthSASL2(xmpptest.SASL2{Mechanism: "SCRAM-SHA-256", User: "alice", Password: "wrong", AgentID: agentPhone,
		Inline: bind2Req("x", smEnable)})
	expectSASL2Failure(t, el, "not-authorized")
	if el.ChildText(xmpptest.NSSASL2, "text") == "" {
		t.Errorf("no <text/>: %s", el)
	}
	if n := len(e.srv.Sessions("alice")); n != 0 {
		t.Fatalf("failed attempt bound %d sessions", n)
	}
	expectSASL2Failure(t, c.AuthSASL2(xmpptest.SASL2{Mechanism: "PLAIN", User: "alice", Password: "wrong"}), "not-authorized")
	expectSASL2Success(t, c.AuthSASL2(xmpptest.SASL2{Mechanism: "PLAIN", User: "alice", Password: "pw-alice", Inline: bind2Req("x", "")}))
	if n := len(e.srv.Sessions("alice")); n != 1 {
		t.Fatalf("%d sessions after retry", n)
	}

	// Other failure conditions, then the limit.
	c, _ = xmpptest.DialSASL2(t, e.addr, domain, 0)
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='DIGEST-MD5'><initial-response>=</initial-response></authenticate>")
	expectSASL2Failure(t, c.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "failure" }), "invalid-mechanism")
	c.Send("<abort xmlns='urn:xmpp:sasl:2'/>")
	expectSASL2Failure(t, c.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "failure" }), "aborted")
	expectSASL2Failure(t, c.AuthSASL2(xmpptest.SASL2{Mechanism: "SCRAM-SHA-1", User: "alice", Password: "wrong"}), "not-authorized")
	if cond := c.WaitClosed(); cond != "policy-violation" {
		t.Fatalf("after %d failures: stream error %q", auth.MaxFailures, cond)
	}

	// Stanzas before authentication end the stream.
	c, _ = xmpptest.DialSASL2(t, e.addr, domain, 0)
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'><initial-response>%s</initial-response></authenticate>",
		b64("n,,n=alice,r=abcdefgh"))
	c.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "challenge" })
	c.Send("<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>")
	if cond := c.WaitClosed(); cond != "not-authorized" {
		t.Fatalf("stanza during SASL2: stream error %q", cond)
	}
}

// XEP-0198 resumption inline in SASL2 after a lost connection: nothing lost
// or duplicated, no stream features, and Bind 2 ignored.
func TestSASL2InlineResume(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	b, succ := e.sasl2("bob", agentPhone, bind2Req("Conversations", smEnable))
	id := succ.Child(xmpptest.NSBind2, "bound").Child(server.NSSM, "enabled").Get("id")
	full := b.JID
	b.Send("<presence/>")
	b.Expect(xmpptest.IsPresenceFrom(b.JID, "")) // h=1
	for i := 1; i <= 3; i++ {
		a.Send("<message to='bob@%s' type='chat'><body>msg-%d</body></message>", domain, i)
	}
	for i := 1; i <= 3; i++ {
		b.Expect(xmpptest.IsMessage(fmt.Sprintf("msg-%d", i)))
	}
	b.Send("<a xmlns='urn:xmpp:sm:3' h='2'/>") // presence and msg-1
	b.Send("<message to='alice@%s' type='chat'><body>from bob</body></message>", domain)
	a.Expect(xmpptest.IsMessage("from bob"))
	b.Close()
	waitFor(t, func() bool { s := e.srv.Sessions("bob"); return len(s) == 1 && s[0].Hibernated() })
	a.Send("<message to='bob@%s' type='chat'><body>msg-4</body></message>", domain)

	b2, succ := e.sasl2("bob", agentPhone,
		fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='2'/>", id)+bind2Req("Conversations", smEnable))
	res := succ.Child(server.NSSM, "resumed")
	if res == nil || res.Get("previd") != id || res.Get("h") != "2" {
		t.Fatalf("no inline <resumed/> (h=2): %s", succ)
	}
	if succ.Child(xmpptest.NSBind2, "bound") != nil {
		t.Fatalf("Bind 2 processed despite resumption: %s", succ)
	}
	if got := succ.ChildText(xmpptest.NSSASL2, "authorization-identifier"); got != full {
		t.Fatalf("authorization-identifier %q, want %q", got, full)
	}
	for i := 2; i <= 4; i++ {
		b2.Expect(xmpptest.IsMessage(fmt.Sprintf("msg-%d", i)))
	}
	b2.ExpectNone(300*time.Millisecond, func(e *xmlel.Element) bool { return isFeatures(e) || isBody("msg-")(e) })
	a.Send("<message to='%s' type='chat'><body>msg-5</body></message>", full)
	b2.Expect(xmpptest.IsMessage("msg-5"))
	b2.Send("<message to='alice@%s' type='chat'><body>back</body></message>", domain)
	if m := a.Expect(xmpptest.IsMessage("back")); m.Get("from") != full {
		t.Fatalf("from after resume: %s", m.Get("from"))
	}
	if n := len(e.srv.Sessions("bob")); n != 1 {
		t.Fatalf("%d sessions", n)
	}

	// A failed resumption reports <failed/> and falls back to Bind 2.
	b3, succ := e.sasl2("bob", agentLaptop, "<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>"+bind2Req("Dino", ""))
	if f := succ.Child(server.NSSM, "failed"); f == nil || f.Child("", "item-not-found") == nil || succ.Child(xmpptest.NSBind2, "bound") == nil {
		t.Fatalf("failed resumption: %s", succ)
	}
	if !strings.HasPrefix(b3.JID, "bob@"+domain+"/Dino.") {
		t.Fatalf("bound %q", b3.JID)
	}
}

// FAST: a token requested at a password login authenticates a later
// connection in one round trip; counts cannot be replayed; tokens are bound
// to user agent and mechanism and die with the password.
func TestFASTToken(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("bob", "pw-bob")
	_, succ := e.sasl2("bob", agentPhone, bind2Req("Monal", "")+"<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>")
	tok := succ.Child(xmpptest.NSFAST, "token")
	if tok == nil {
		t.Fatalf("no token: %s", succ)
	}
	token := tok.Get("token")
	exp, err := time.Parse(time.RFC3339, tok.Get("expiry"))
	if err != nil || len(token) != auth.TokenSize {
		t.Fatalf("token %q expiry %q: %v", token, tok.Get("expiry"), err)
	}
	if d := time.Until(exp); d < server.FASTTokenLifetime-time.Minute || d > server.FASTTokenLifetime {
		t.Fatalf("expiry in %v", d)
	}
	// Only a digest is stored.
	stored, err := e.store.FASTTokens(context.Background(), "bob", agentPhone, auth.MechHTNone)
	sum := sha256.Sum256([]byte(token))
	if err != nil || len(stored) != 1 || string(stored[0].Key) != string(sum[:]) {
		t.Fatalf("stored tokens %+v, %v", stored, err)
	}

	fast := func(count int) string { return fmt.Sprintf("<fast xmlns='urn:xmpp:fast:0' count='%d'/>", count) }
	c, el := e.fastLogin("bob", agentPhone, auth.MechHTNone, token, bind2Req("Monal", smEnable)+fast(1))
	succ = expectSASL2Success(t, el)
	if succ.Child(xmpptest.NSBind2, "bound").Child(server.NSSM, "enabled") == nil || succ.Child(xmpptest.NSFAST, "token") != nil {
		t.Fatalf("FAST login: %s", succ)
	}
	if r := c.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); r.Get("type") != "result" {
		t.Fatalf("roster: %s", r)
	}
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, token, fast(1))
	expectSASL2Failure(t, el, "not-authorized") // replayed count
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, token, fast(2))
	expectSASL2Success(t, el)
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, token, "") // no count: no 0-RTT, allowed
	expectSASL2Success(t, el)
	_, el = e.fastLogin("bob", agentLaptop, auth.MechHTNone, token, fast(3))
	expectSASL2Failure(t, el, "not-authorized") // other client
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTEndp, token, fast(3))
	expectSASL2Failure(t, el, "not-authorized") // other mechanism
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, token[1:]+"x", fast(3))
	expectSASL2Failure(t, el, "not-authorized") // wrong token

	// A password change invalidates every token.
	creds, err := auth.DeriveCredentials("new password", 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []store.ScramKey
	for _, c := range creds {
		keys = append(keys, store.ScramKey{Hash: c.Hash, Salt: c.Salt, Iterations: c.Iterations, StoredKey: c.StoredKey, ServerKey: c.ServerKey})
	}
	if err := e.store.SetCredentials(context.Background(), "bob", keys); err != nil {
		t.Fatal(err)
	}
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, token, fast(4))
	expectSASL2Failure(t, el, "not-authorized")
}

// The channel-binding variant -EXPR (tls-exporter, TLS 1.3) binds the
// proofs to the connection.
func TestFASTChannelBinding(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("bob", "pw-bob")
	_, succ := e.sasl2("bob", agentPhone, "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-EXPR'/>")
	token := succ.Child(xmpptest.NSFAST, "token").Get("token")
	c, el := e.fastLogin("bob", agentPhone, auth.MechHTExpr, token, bind2Req("Monal", ""))
	expectSASL2Success(t, el)
	if !strings.HasPrefix(c.JID, "bob@"+domain+"/Monal.") {
		t.Fatalf("bound %q", c.JID)
	}
	// A proof computed for another connection's binding data fails.
	c2, _ := xmpptest.DialSASL2(t, e.addr, domain, 0)
	cb := c.HTChannelBinding(auth.MechHTExpr) // the first connection's exporter value
	initiator, _ := auth.HTProof(auth.TokenKey(token), cb)
	c2.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='%s'><initial-response>%s</initial-response><user-agent id='%s'/></authenticate>",
		auth.MechHTExpr, b64("bob\x00"+string(initiator)), agentPhone)
	expectSASL2Failure(t, c2.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "failure" }), "not-authorized")
	// The token is bound to -EXPR.
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, token, "")
	expectSASL2Failure(t, el, "not-authorized")
	// -EXPR does not exist below TLS 1.3.
	c3, f := xmpptest.DialSASL2(t, e.addr, domain, tls.VersionTLS12)
	if _, fastMechs := xmpptest.SASL2Mechanisms(f); slices.Contains(fastMechs, auth.MechHTExpr) {
		t.Fatalf("-EXPR offered on TLS 1.2: %v", fastMechs)
	}
	c3.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='%s'><initial-response>%s</initial-response><user-agent id='%s'/></authenticate>",
		auth.MechHTExpr, b64("bob\x00"+string(initiator)), agentPhone)
	expectSASL2Failure(t, c3.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "failure" }), "invalid-mechanism")
}

// Expired tokens are refused; tokens near expiry are rotated without
// locking out a client that misses the new one; clients can invalidate.
func TestFASTExpiryRotationInvalidation(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("bob", "pw-bob")
	ctx := context.Background()
	put := func(expires time.Time) string {
		t.Helper()
		token, key := auth.NewToken()
		if err := e.store.PutFASTToken(ctx, "bob", store.FASTToken{Agent: agentPhone, Mechanism: auth.MechHTNone, Key: key, Expires: expires}, 0); err != nil {
			t.Fatal(err)
		}
		return token
	}
	expired := put(time.Now().Add(-time.Minute))
	_, el := e.fastLogin("bob", agentPhone, auth.MechHTNone, expired, "")
	expectSASL2Failure(t, el, "credentials-expired")

	old := put(time.Now().Add(48 * time.Hour)) // due for rotation
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, old, "")
	rotated := expectSASL2Success(t, el).Child(xmpptest.NSFAST, "token")
	if rotated == nil {
		t.Fatalf("no rotation near expiry: %s", el)
	}
	// The new token was lost: the old one still works, and yields another.
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, old, "")
	newer := expectSASL2Success(t, el).Child(xmpptest.NSFAST, "token")
	if newer == nil || newer.Get("token") == rotated.Get("token") {
		t.Fatalf("second rotation: %s", el)
	}
	// Using the newest retires the old token and the unused one.
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, newer.Get("token"), "")
	if expectSASL2Success(t, el).Child(xmpptest.NSFAST, "token") != nil {
		t.Fatalf("fresh token rotated: %s", el)
	}
	for _, tok := range []string{old, rotated.Get("token")} {
		_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, tok, "")
		expectSASL2Failure(t, el, "not-authorized")
	}
	// Invalidation (XEP-0484 §3.6).
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, newer.Get("token"), "<fast xmlns='urn:xmpp:fast:0' invalidate='true'/>")
	if expectSASL2Success(t, el).Child(xmpptest.NSFAST, "token") != nil {
		t.Fatalf("token issued on invalidation: %s", el)
	}
	_, el = e.fastLogin("bob", agentPhone, auth.MechHTNone, newer.Get("token"), "")
	expectSASL2Failure(t, el, "not-authorized")
}

// Modules enable their features inline in Bind 2 through HandleBind2Inline.
func TestBind2InlineHandler(t *testing.T) {
	const ns = "urn:xmpp:carbons:2"
	var got []string
	e := newEnv(t, server.Limits{}, func(s *server.Server) {
		s.HandleBind2Inline(ns, func(sess *server.Session, el *xmlel.Element) *xmlel.Element {
			got = append(got, sess.JID().String()+" "+el.Name.Local)
			return nil
		})
		s.HandleBind2Inline("urn:example:echo", func(sess *server.Session, el *xmlel.Element) *xmlel.Element {
			return xmlel.New("urn:example:echo", "done", "for", el.Get("v"))
		})
	})
	e.addUser("bob", "pw-bob")
	_, f := xmpptest.DialSASL2(t, e.addr, domain, 0)
	var vars []string
	for _, fe := range f.Child(xmpptest.NSSASL2, "authentication").Child(xmpptest.NSSASL2, "inline").
		Child(xmpptest.NSBind2, "bind").Child(xmpptest.NSBind2, "inline").ChildrenNamed(xmpptest.NSBind2, "feature") {
		vars = append(vars, fe.Get("var"))
	}
	if !slices.Equal(vars, []string{server.NSSM, server.NSCSI, ns, "urn:example:echo"}) {
		t.Fatalf("advertised %v", vars)
	}
	c, succ := e.sasl2("bob", agentPhone, bind2Req("Conversations",
		"<enable xmlns='urn:xmpp:carbons:2'/><x xmlns='urn:example:echo' v='1'/><unknown xmlns='urn:example:nope'/>"))
	if len(got) != 1 || got[0] != c.JID+" enable" {
		t.Fatalf("carbons handler calls: %q", got)
	}
	if d := succ.Child(xmpptest.NSBind2, "bound").Child("urn:example:echo", "done"); d == nil || d.Get("for") != "1" {
		t.Fatalf("handler result not in <bound/>: %s", succ)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering urn:xmpp:sm:3 did not panic")
		}
	}()
	e.srv.HandleBind2Inline(server.NSSM, func(*server.Session, *xmlel.Element) *xmlel.Element { return nil })
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
