package register

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// ibrEnv is a server offering in-band registration with invitations.
type ibrEnv struct {
	*modtest.Env
	inv *invite.Service
}

func newIBREnv(t *testing.T) *ibrEnv {
	t.Helper()
	e := modtest.New(t)
	svc := invite.New(invite.Config{Store: e.Store, Domain: modtest.Domain, Roster: e.S, Now: e.Clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	Register(e.S)
	EnableInBand(e.S, svc)
	return &ibrEnv{Env: e, inv: svc}
}

// secureStream opens a stream, negotiates STARTTLS and returns the client
// and the features offered on the secure, unauthenticated stream.
func (e *ibrEnv) secureStream(t *testing.T) (*xmpptest.Client, *xmlel.Element) {
	t.Helper()
	c := xmpptest.Dial(t, e.Addr(), modtest.Domain)
	first := c.OpenStream()
	if first.Child(NSFeature, "register") != nil {
		t.Fatalf("registration offered before TLS: %s", first)
	}
	return c, c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: modtest.Domain})
}

func (e *ibrEnv) create(t *testing.T, o invite.Options) store.Invite {
	t.Helper()
	inv, err := e.inv.Create(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func registerQuery(user, pass string) string {
	return "<query xmlns='jabber:iq:register'><username>" + user + "</username><password>" + pass + "</password></query>"
}

func preauth(token string) string {
	return "<preauth xmlns='urn:xmpp:pars:0' token='" + token + "'/>"
}

// errorText returns the <text/> of an error stanza.
func errorText(st *xmlel.Element) string {
	if e := st.Child("", "error"); e != nil {
		return e.ChildText("", "text")
	}
	return ""
}

// rosterItem returns user's roster item for contact (fails if missing).
func rosterItem(t *testing.T, e *ibrEnv, user, contact string) store.RosterItem {
	t.Helper()
	it, err := e.Store.RosterItem(context.Background(), user, contact)
	if err != nil {
		t.Fatalf("roster item %s of %s: %v", contact, user, err)
	}
	return it
}

func TestRegisterWithPreauthToken(t *testing.T) {
	e := newIBREnv(t)
	e.AddUser("mum", "mum password")
	inv := e.create(t, invite.Options{Inviter: "mum"})

	// The inviter is online and has fetched her roster: she gets a push.
	mum := xmpptest.Dial(t, e.Addr(), modtest.Domain)
	mum.Login("mum", "mum password", "phone")
	mum.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")

	c, features := e.secureStream(t)
	for _, ns := range []string{NSFeature, NSIBRToken, NSInviteLegacy} {
		if features.Child(ns, "register") == nil {
			t.Fatalf("stream features lack <register xmlns=%q/>: %s", ns, features)
		}
	}
	if res := c.IQ("set", modtest.Domain, preauth(inv.Token)); res.Get("type") != "result" {
		t.Fatalf("preauth: %s", res)
	}
	form := c.IQ("get", "", "<query xmlns='jabber:iq:register'/>")
	if q := form.Child(NS, "query"); form.Get("type") != "result" || q == nil || q.Child(NS, "username") == nil || q.Child(NS, "password") == nil {
		t.Fatalf("form: %s", form)
	}
	if res := c.IQ("set", "", registerQuery("Kid", "kid password")); res.Get("type") != "result" {
		t.Fatalf("register: %s", res)
	}
	// XEP-0077 §3.1: the client may authenticate on the same stream.
	if el := c.Auth("kid", "kid password"); el.Name.Local != "success" {
		t.Fatalf("login after registration: %s", el)
	}

	// XEP-0379: inviter and invitee have a mutual subscription.
	if it := rosterItem(t, e, "mum", "kid@example.org"); it.Subscription != "both" {
		t.Fatalf("mum's item: %+v", it)
	}
	if it := rosterItem(t, e, "kid", "mum@example.org"); it.Subscription != "both" {
		t.Fatalf("kid's item: %+v", it)
	}
	push := mum.Expect(func(el *xmlel.Element) bool {
		q := el.Child("jabber:iq:roster", "query")
		return el.Get("type") == "set" && q != nil && q.Child("jabber:iq:roster", "item") != nil
	})
	if item := push.Child("jabber:iq:roster", "query").Child("jabber:iq:roster", "item"); item.Get("jid") != "kid@example.org" || item.Get("subscription") != "both" {
		t.Fatalf("roster push: %s", push)
	}
	got, err := e.Store.Invite(context.Background(), inv.Token)
	if err != nil || got.Uses != 1 || got.UsedBy[0].Username != "kid" {
		t.Fatalf("invite after use: %+v, %v", got, err)
	}

	// The token is spent: a second stream is refused.
	c2, _ := e.secureStream(t)
	res := c2.IQ("set", "", preauth(inv.Token))
	if xmpptest.ErrorCondition(res) != "item-not-found" || !strings.Contains(errorText(res), "used") {
		t.Fatalf("reused token: %s", res)
	}
}

func TestRegisterTokenErrors(t *testing.T) {
	e := newIBREnv(t)
	expiring := e.create(t, invite.Options{Expires: time.Hour})
	revoked := e.create(t, invite.Options{})
	if err := e.inv.Revoke(context.Background(), revoked.Token); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(time.Hour)

	c, _ := e.secureStream(t)
	for _, tc := range []struct{ payload, cond, text string }{
		{preauth("WRONGTOKEN"), "item-not-found", "invalid"},
		{preauth(expiring.Token), "item-not-found", "expired"},
		{preauth(revoked.Token), "item-not-found", "revoked"},
		{"<preauth xmlns='urn:xmpp:pars:0'/>", "bad-request", ""},
	} {
		res := c.IQ("set", "", tc.payload)
		if xmpptest.ErrorCondition(res) != tc.cond || !strings.Contains(errorText(res), tc.text) {
			t.Fatalf("%s: got %s, want %s (%q)", tc.payload, res, tc.cond, tc.text)
		}
	}
	// No token was accepted: registration stays closed. The fifth error
	// ends the stream.
	res := c.IQ("set", "", registerQuery("intruder", "pass word"))
	if xmpptest.ErrorCondition(res) != "not-allowed" {
		t.Fatalf("register without token: %s", res)
	}
	if cond := c.WaitClosed(); cond != "policy-violation" {
		t.Fatalf("stream closed with %q, want policy-violation", cond)
	}
	if ok, _ := e.Store.AccountExists(context.Background(), "intruder"); ok {
		t.Fatal("account created without a token")
	}
}

func TestRegisterWithoutTokenClosedThenOpen(t *testing.T) {
	e := newIBREnv(t)
	c, _ := e.secureStream(t)
	if res := c.IQ("get", "", "<query xmlns='jabber:iq:register'/>"); xmpptest.ErrorCondition(res) != "not-allowed" {
		t.Fatalf("form without token: %s", res)
	}
	if res := c.IQ("set", "", registerQuery("walkin", "pass word")); xmpptest.ErrorCondition(res) != "not-allowed" {
		t.Fatalf("register without token: %s", res)
	}
	if err := e.inv.SetOpen(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if res := c.IQ("set", "", registerQuery("walkin", "")); xmpptest.ErrorCondition(res) != "not-acceptable" {
		t.Fatalf("empty password: %s", res)
	}
	if res := c.IQ("set", "", registerQuery("walkin", "pass word")); res.Get("type") != "result" {
		t.Fatalf("open registration: %s", res)
	}
	c2, _ := e.secureStream(t)
	if res := c2.IQ("set", "", registerQuery("WalkIn", "other")); xmpptest.ErrorCondition(res) != "conflict" {
		t.Fatalf("taken username: %s", res)
	}
}

func TestRegisterOtherElementEndsExchange(t *testing.T) {
	e := newIBREnv(t)
	inv := e.create(t, invite.Options{})
	c, _ := e.secureStream(t)
	if res := c.IQ("set", "", preauth(inv.Token)); res.Get("type") != "result" {
		t.Fatalf("preauth: %s", res)
	}
	c.Send("<message to='someone@example.org'><body>hi</body></message>")
	if cond := c.WaitClosed(); cond != "not-authorized" {
		t.Fatalf("stream closed with %q, want not-authorized", cond)
	}
}

func TestRegisterJoinsCircles(t *testing.T) {
	e := newIBREnv(t)
	e.AddUser("grandpa", "grandpa password")
	if err := e.inv.JoinCircle(context.Background(), "Family", "grandpa"); err != nil {
		t.Fatal(err)
	}
	inv := e.create(t, invite.Options{Reusable: true, MaxUses: 5, Circles: []string{"Family"}})
	for _, u := range []string{"ann", "ben"} {
		c, _ := e.secureStream(t)
		if res := c.IQ("set", "", preauth(inv.Token)); res.Get("type") != "result" {
			t.Fatalf("preauth: %s", res)
		}
		if res := c.IQ("set", "", registerQuery(u, u+" password")); res.Get("type") != "result" {
			t.Fatalf("register %s: %s", u, res)
		}
	}
	for _, pair := range [][2]string{{"ann", "grandpa"}, {"ben", "grandpa"}, {"ann", "ben"}} {
		for _, dir := range [][2]string{{pair[0], pair[1]}, {pair[1], pair[0]}} {
			it := rosterItem(t, e, dir[0], dir[1]+"@example.org")
			if it.Subscription != "both" || !slices.Contains(it.Groups, "Family") {
				t.Fatalf("%s's item for %s: %+v", dir[0], dir[1], it)
			}
		}
	}
	// The new member logs in and sees the circle in its roster.
	ann := xmpptest.Dial(t, e.Addr(), modtest.Domain)
	ann.Login("ann", "ann password", "")
	res := ann.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	if n := len(res.Child("jabber:iq:roster", "query").ChildrenNamed("jabber:iq:roster", "item")); n != 2 {
		t.Fatalf("ann's roster: %s", res)
	}
}

func TestRegistrationNotOfferedAfterAuth(t *testing.T) {
	e := newIBREnv(t)
	e.AddUser("alice", "alice password")
	c := xmpptest.Dial(t, e.Addr(), modtest.Domain)
	c.OpenStream()
	c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: modtest.Domain})
	if el := c.Auth("alice", "alice password"); el.Name.Local != "success" {
		t.Fatal(el)
	}
	if f := c.OpenStream(); f.Child(NSFeature, "register") != nil || f.Child(NSIBRToken, "register") != nil {
		t.Fatalf("registration offered after authentication: %s", f)
	}
}
