// Package peptest helps the tests of modules built on personal eventing
// (mod/pep, mod/bookmarks): a client wrapper around modtest.Client that
// advertises XEP-0115 entity capabilities, answers the server's disco#info
// queries for them, keeps stanzas it was not waiting for, and can tell that
// nothing more arrived (by a ping round trip to the server, which needs
// mod/ping registered).
package peptest

import (
	"strconv"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Namespaces used in tests.
const (
	NSPubSub = "http://jabber.org/protocol/pubsub"
	NSEvent  = NSPubSub + "#event"
	NSPing   = "urn:xmpp:ping"
)

// ProbeNode is a node every Online client asks notifications for, so that
// Ready functions can tell when the server knows the client's caps.
const ProbeNode = "urn:hearth:test:probe"

// CapsNode is the XEP-0115 node of test clients.
const CapsNode = "https://hearth.test/client"

var identity = []server.Identity{{Category: "client", Type: "pc", Name: "hearth test"}}

// Ver returns the XEP-0115 verification string of a test client advertising
// features (plus disco#info).
func Ver(features []string) string {
	return disco.CapsVer(identity, append([]string{disco.NSInfo}, features...), nil)
}

// Client is a test client with caps.
type Client struct {
	*modtest.Client
	// T is the test the client fails.
	T testing.TB
	// Features are advertised in caps and in answers to disco#info.
	Features []string
	// Queries counts the disco#info queries the server sent (XEP-0115 cache
	// misses).
	Queries int
	// Ready reports whether the server has learnt the client's caps; Online
	// waits for it. Nil means it does not wait.
	Ready func(*Client) bool

	buf []*xmlel.Element
	n   int
}

// Wrap wraps a connected client.
func Wrap(c *modtest.Client, ready func(*Client) bool) *Client {
	return &Client{Client: c, T: c.T, Ready: ready}
}

// Online sends available presence with priority 0 and caps for features
// plus ProbeNode+"+notify", and waits until Ready (answering the server's
// disco#info query).
func (c *Client) Online(features ...string) {
	c.OnlineWithPriority(0, features...)
}

// OnlineWithPriority is Online with a presence priority.
func (c *Client) OnlineWithPriority(prio int, features ...string) {
	c.T.Helper()
	c.Features = append([]string{ProbeNode + "+notify"}, features...)
	p := xmlel.New(server.NSClient, "presence")
	p.Add(xmlel.New(server.NSClient, "priority").AddText(strconv.Itoa(prio)))
	p.Add(xmlel.New(disco.NSCaps, "c", "hash", "sha-1", "node", CapsNode, "ver", Ver(c.Features)))
	c.Send(p)
	c.Sync() // the presence is handled: Ready no longer sees the previous caps
	for i := 0; c.Ready != nil && !c.Ready(c); i++ {
		if i > 500 {
			c.T.Fatalf("%s: the server never learnt the caps", c.JID)
		}
		time.Sleep(5 * time.Millisecond)
		c.Sync()
	}
}

// read returns the next stanza, answering disco#info queries on the way.
func (c *Client) read() *xmlel.Element {
	c.T.Helper()
	for {
		el := c.Client.Next()
		q := el.Child(disco.NSInfo, "query")
		if el.Name.Local == "iq" && el.Get("type") == "get" && q != nil {
			c.Queries++
			res := xmlel.New(server.NSClient, "iq", "type", "result", "id", el.Get("id"), "to", el.Get("from"))
			rq := xmlel.New(disco.NSInfo, "query")
			rq.Set("node", q.Get("node"))
			for _, id := range identity {
				rq.Add(xmlel.New(disco.NSInfo, "identity", "category", id.Category, "type", id.Type, "name", id.Name))
			}
			for _, f := range append([]string{disco.NSInfo}, c.Features...) {
				rq.Add(xmlel.New(disco.NSInfo, "feature", "var", f))
			}
			c.Send(res.Add(rq))
			continue
		}
		return el
	}
}

// Expect returns the first stanza, kept or new, for which match is true;
// the others are kept. It fails the test after the read timeout.
func (c *Client) Expect(what string, match func(*xmlel.Element) bool) *xmlel.Element {
	c.T.Helper()
	for i, el := range c.buf {
		if match(el) {
			c.buf = append(c.buf[:i], c.buf[i+1:]...)
			return el
		}
	}
	for {
		el := c.read()
		if match(el) {
			return el
		}
		c.buf = append(c.buf, el)
	}
}

// Request sends an IQ of type typ with payload to to ("" for none) and
// returns the answer; other stanzas are kept.
func (c *Client) Request(typ, to, payload string) *xmlel.Element {
	c.T.Helper()
	c.n++
	id := "pt" + strconv.Itoa(c.n)
	st := xmlel.New(server.NSClient, "iq", "type", typ, "id", id)
	st.Set("to", to)
	st.Add(xmlel.MustParse(payload))
	c.Send(st)
	return c.Expect("answer to "+id, func(el *xmlel.Element) bool { return el.Name.Local == "iq" && el.Get("id") == id })
}

// Sync makes a ping round trip to the server: everything routed to the
// client before the ping was handled is then kept.
func (c *Client) Sync() {
	c.T.Helper()
	if r := c.Request("get", modtest.Domain, `<ping xmlns='urn:xmpp:ping'/>`); r.Get("type") != "result" {
		c.T.Fatalf("ping: %s", r)
	}
}

// Drain syncs and returns (and forgets) the kept stanzas.
func (c *Client) Drain() []*xmlel.Element {
	c.T.Helper()
	c.Sync()
	out := c.buf
	c.buf = nil
	return out
}

// Events returns the pubsub event notifications for node among els.
func Events(els []*xmlel.Element, node string) []*xmlel.Element {
	var out []*xmlel.Element
	for _, el := range els {
		if IsEvent(node)(el) {
			out = append(out, el)
		}
	}
	return out
}

// IsEvent matches a headline message with a pubsub event for node (items,
// delete or purge).
func IsEvent(node string) func(*xmlel.Element) bool {
	return func(el *xmlel.Element) bool {
		if el.Name.Local != "message" || el.Get("type") != "headline" {
			return false
		}
		ev := el.Child(NSEvent, "event")
		if ev == nil {
			return false
		}
		for _, c := range ev.Elements() {
			if c.Get("node") == node {
				return true
			}
		}
		return false
	}
}

// EventItems returns the <item/> and <retract/> children of an event
// notification's <items/>.
func EventItems(msg *xmlel.Element) []*xmlel.Element {
	ev := msg.Child(NSEvent, "event")
	if ev == nil {
		return nil
	}
	items := ev.Child(NSEvent, "items")
	if items == nil {
		return nil
	}
	return items.Elements()
}
