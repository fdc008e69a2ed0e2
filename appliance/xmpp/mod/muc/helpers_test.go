package muc

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/mam"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// svcDomain is the MUC service's domain in the tests.
const svcDomain = "groups." + modtest.Domain

// quiet is how long a test waits to see that something does not arrive.
const quiet = 200 * time.Millisecond

// env is a modtest server with the user archive and the MUC service
// registered, listening on loopback for raw xmpptest clients, with the
// accounts alice, bob, carol and dave (password "pw-<name>").
type env struct {
	*modtest.Env
	svc  *Service
	addr string
}

func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	return newEnvWith(t, nil, opts...)
}

// newEnvWith is newEnv registering more modules with before first.
func newEnvWith(t *testing.T, before func(*server.Server), opts ...func(*Options)) *env {
	t.Helper()
	e := &env{Env: modtest.New(t)}
	if before != nil {
		before(e.S)
	}
	e.register(opts...)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		e.AddUser(u, "pw-"+u)
	}
	return e
}

// register installs the modules on e's server and starts listening.
func (e *env) register(opts ...func(*Options)) {
	e.T.Helper()
	disco.Register(e.S)
	mam.Register(e.S)
	o := Options{Domain: svcDomain}
	for _, f := range opts {
		f(&o)
	}
	svc, err := Register(e.S, o)
	if err != nil {
		e.T.Fatal(err)
	}
	e.svc = svc
	e.addr = e.Addr()
}

// online logs user in with resource and sends initial presence.
func (e *env) online(user, resource string) *xmpptest.Client {
	e.T.Helper()
	c := xmpptest.Dial(e.T, e.addr, modtest.Domain)
	c.Login(user, "pw-"+user, resource)
	c.Send("<presence/>")
	c.Expect(xmpptest.IsPresenceFrom(c.JID, ""))
	return c
}

// roomJID returns name@svcDomain, occ the occupant JID name@svcDomain/nick.
func roomJID(name string) string   { return name + "@" + svcDomain }
func occ(room, nick string) string { return roomJID(room) + "/" + nick }

// userX returns the muc#user <x/> of st, or nil.
func userX(st *xmlel.Element) *xmlel.Element { return st.Child(NSUser, "x") }

// codes returns the status codes of st's muc#user <x/>.
func codes(st *xmlel.Element) []int {
	var out []int
	if x := userX(st); x != nil {
		for _, s := range x.ChildrenNamed(NSUser, "status") {
			n, _ := strconv.Atoi(s.Get("code"))
			out = append(out, n)
		}
	}
	return out
}

// hasCodes reports whether st carries every code in want.
func hasCodes(st *xmlel.Element, want ...int) bool {
	got := codes(st)
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// item returns the <item/> of st's muc#user <x/> (or an empty element).
func item(st *xmlel.Element) *xmlel.Element {
	if x := userX(st); x != nil {
		if it := x.Child(NSUser, "item"); it != nil {
			return it
		}
	}
	return xmlel.New(NSUser, "item")
}

// occupantID returns st's XEP-0421 occupant-id.
func occupantID(st *xmlel.Element) string {
	if o := st.Child(NSOccupantID, "occupant-id"); o != nil {
		return o.Get("id")
	}
	return ""
}

// presenceFrom matches a presence of type typ from exactly from.
func presenceFrom(from, typ string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		return el.Name.Local == "presence" && el.Get("from") == from && el.Get("type") == typ
	}
}

// selfPresence matches the self-presence (status 110) of typ from the
// occupant JID from.
func selfPresence(from, typ string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		return presenceFrom(from, typ)(el) && hasCodes(el, 110)
	}
}

// errorFrom matches an error stanza named kind ("presence", "message")
// from from.
func errorFrom(kind, from string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		return el.Name.Local == kind && el.Get("type") == "error" && el.Get("from") == from
	}
}

// groupchat matches a groupchat message with body from from.
func groupchat(from, body string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && el.Get("type") == "groupchat" && el.Get("from") == from &&
			el.ChildText("", "body") == body
	}
}

// subjectFrom matches a subject message (XEP-0045 §8.1) from from.
func subjectFrom(from string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && el.Get("from") == from && el.Child("", "subject") != nil &&
			el.Child("", "body") == nil
	}
}

// join sends presence to room/nick with the MUC <x/> (extra inside it) and
// returns the self-presence.
func join(c *xmpptest.Client, room, nick, extra string) *xmlel.Element {
	c.Send("<presence to='%s'><x xmlns='%s'>%s</x></presence>", occ(room, nick), NS, extra)
	return c.Expect(func(el *xmlel.Element) bool {
		return el.Get("from") == occ(room, nick) && (hasCodes(el, 110) || el.Get("type") == "error")
	})
}

// joinOK is join failing the test unless the entry succeeded; it also
// waits for the subject, which ends the entry (XEP-0045 §7.2.16).
func joinOK(t *testing.T, c *xmpptest.Client, room, nick, extra string) *xmlel.Element {
	t.Helper()
	p := join(c, room, nick, extra)
	if p.Get("type") == "error" {
		t.Fatalf("%s could not enter %s as %s: %s", c.JID, room, nick, p)
	}
	c.Expect(func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && strings.HasPrefix(el.Get("from"), roomJID(room)) && el.Child("", "subject") != nil
	})
	return p
}

// wantPresenceError fails unless entering room as nick gives the error
// condition want.
func wantPresenceError(t *testing.T, c *xmpptest.Client, room, nick, extra, want string) {
	t.Helper()
	p := join(c, room, nick, extra)
	if p.Get("type") != "error" || xmpptest.ErrorCondition(p) != want {
		t.Fatalf("entering %s as %s: got %s, want error %s", room, nick, p, want)
	}
}

// wantIQError fails unless iq is an IQ error with condition want.
func wantIQError(t *testing.T, iq *xmlel.Element, want string) {
	t.Helper()
	if iq.Get("type") != "error" || xmpptest.ErrorCondition(iq) != want {
		t.Fatalf("got %s, want error %s", iq, want)
	}
}

// wantResult fails unless iq is a result.
func wantResult(t *testing.T, iq *xmlel.Element) *xmlel.Element {
	t.Helper()
	if iq.Get("type") != "result" {
		t.Fatalf("got %s, want a result", iq)
	}
	return iq
}

// create makes room with c as owner (nick) and accepts the default
// configuration (instant room, XEP-0045 §10.1.2), or submits fields.
func create(t *testing.T, c *xmpptest.Client, room, nick, fields string) *xmlel.Element {
	t.Helper()
	p := join(c, room, nick, "")
	if p.Get("type") == "error" || !hasCodes(p, 201, 110) {
		t.Fatalf("creating %s: got %s", room, p)
	}
	configure(t, c, room, fields)
	return p
}

// configure submits the configuration form with fields (rendered <field/>s).
func configure(t *testing.T, c *xmpptest.Client, room, fields string) {
	t.Helper()
	wantResult(t, c.IQ("set", roomJID(room), fmt.Sprintf(
		"<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>%s</x></query>", NSOwner, fields)))
}

// cfgField renders a submitted muc#roomconfig field.
func cfgField(name, value string) string {
	if name != "FORM_TYPE" {
		name = "muc#roomconfig_" + name
	}
	return fmt.Sprintf("<field var='%s'><value>%s</value></field>", name, value)
}

// setAffiliation sends a muc#admin affiliation change.
func setAffiliation(c *xmpptest.Client, room, who, aff, reason string) *xmlel.Element {
	r := ""
	if reason != "" {
		r = "<reason>" + reason + "</reason>"
	}
	return c.IQ("set", roomJID(room), fmt.Sprintf("<query xmlns='%s'><item affiliation='%s' jid='%s'>%s</item></query>", NSAdmin, aff, who, r))
}

// setRole sends a muc#admin role change.
func setRole(c *xmpptest.Client, room, nick, role, reason string) *xmlel.Element {
	r := ""
	if reason != "" {
		r = "<reason>" + reason + "</reason>"
	}
	return c.IQ("set", roomJID(room), fmt.Sprintf("<query xmlns='%s'><item role='%s' nick='%s'>%s</item></query>", NSAdmin, role, nick, r))
}

var msgID atomic.Int64

// say sends a groupchat message and returns its id.
func say(c *xmpptest.Client, room, body string) string {
	id := "m" + strconv.FormatInt(msgID.Add(1), 10)
	c.Send("<message to='%s' type='groupchat' id='%s'><body>%s</body></message>", roomJID(room), id, body)
	return id
}

// stanzaID returns the XEP-0359 stanza-id of st given by by.
func stanzaID(st *xmlel.Element, by string) string {
	for _, s := range st.ChildrenNamed(NSStanzaID, "stanza-id") {
		if s.Get("by") == by {
			return s.Get("id")
		}
	}
	return ""
}

// mamResult is one received archive result (XEP-0313 §4.2).
type mamResult struct {
	id, from string
	msg      *xmlel.Element
	stamp    string
}

// mamQuery sends an archive query to 'to' and returns the results received
// before the IQ answer, and that answer.
func mamQuery(c *xmpptest.Client, to, payload string) ([]mamResult, *xmlel.Element) {
	id := "mam" + strconv.FormatInt(msgID.Add(1), 10)
	c.Send("<iq type='set' id='%s' to='%s'>%s</iq>", id, to, payload)
	answer := c.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "iq" && el.Get("id") == id })
	var out []mamResult
	for _, el := range c.Drain(func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && el.Child(NSMAM, "result") != nil
	}) {
		r := el.Child(NSMAM, "result")
		fwd := r.Child("urn:xmpp:forward:0", "forwarded")
		if fwd == nil {
			continue
		}
		out = append(out, mamResult{id: r.Get("id"), from: el.Get("from"), msg: fwd.Child(server.NSClient, "message"),
			stamp: fwd.Child(NSDelay, "delay").Get("stamp")})
	}
	return out, answer
}

// barrier returns once the server has handled what c sent before.
func barrier(c *xmpptest.Client) { c.IQ("get", "", "<ping xmlns='urn:xmpp:ping'/>") }
