// Package xmpptest is a raw XMPP client for Hearth's Go tests: it speaks real
// XML over a real TCP/TLS connection (RFC 6120 stream negotiation, STARTTLS,
// SCRAM, resource binding) and lets a test send arbitrary bytes and wait for
// the elements it expects, including deliberately bad input.
package xmpptest

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/xdg-go/scram"
)

// DefaultTimeout bounds every wait of the client.
const DefaultTimeout = 10 * time.Second

// Client is one test connection. Elements read from the server are queued in
// arrival order; Expect consumes the first one that matches.
type Client struct {
	t      testing.TB
	Domain string
	// JID is the bound full JID after Login.
	JID string

	mu      sync.Mutex
	conn    net.Conn
	pending []*xmlel.Element
	cond    *sync.Cond
	err     error // terminal read error
	gen     int   // bumped at each stream (re)start
	// StreamError is the condition of a received <stream:error/>, if any.
	StreamError string
	closed      bool
	paused      bool
}

// Dial connects to addr and opens a stream to domain without TLS.
func Dial(t testing.TB, addr, domain string) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &Client{t: t, Domain: domain, conn: conn}
	c.cond = sync.NewCond(&c.mu)
	t.Cleanup(func() { c.Close() })
	return c
}

// DialTLS connects with direct TLS (XEP-0368) and opens a stream.
func DialTLS(t testing.TB, addr, domain string, cfg *tls.Config) *Client {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	tc := tls.Client(raw, cfg)
	tc.SetDeadline(time.Now().Add(DefaultTimeout))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c := &Client{t: t, Domain: domain, conn: tc}
	c.cond = sync.NewCond(&c.mu)
	t.Cleanup(func() { c.Close() })
	return c
}

// Conn returns the current connection (TLS after StartTLS).
func (c *Client) Conn() net.Conn { return c.conn }

// SetConn replaces the connection, for tests that negotiate TLS themselves.
func (c *Client) SetConn(conn net.Conn) { c.conn = conn }

// Close closes the connection.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.conn.Close()
}

// Raw writes s unchanged.
func (c *Client) Raw(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Send writes one stanza given as an XML string (formatted like fmt.Sprintf).
func (c *Client) Send(format string, args ...any) {
	c.t.Helper()
	c.Raw(fmt.Sprintf(format, args...))
}

// OpenStream sends a stream header and starts reading the server's stream.
// It returns the server's <stream:features/>.
func (c *Client) OpenStream() *xmlel.Element {
	c.t.Helper()
	c.StartReader(fmt.Sprintf("<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", c.Domain))
	return c.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "features" })
}

// StartReader writes header (a stream opening, possibly malformed) and reads
// the server's stream in the background.
func (c *Client) StartReader(header string) {
	c.t.Helper()
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.pending = nil
	c.err = nil
	c.mu.Unlock()
	c.Raw(header)
	go c.readLoop(gen, &gatedReader{c: c, r: c.conn})
}

// gatedReader blocks reads while the client is paused, so tests can play a
// peer that stops reading.
type gatedReader struct {
	c *Client
	r io.Reader
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.c.mu.Lock()
	for g.c.paused && !g.c.closed {
		g.c.cond.Wait()
	}
	g.c.mu.Unlock()
	return g.r.Read(p)
}

// PauseReading stops reading from the connection until ResumeReading, so the
// server's writes back up (a phone that stopped reading).
func (c *Client) PauseReading() {
	c.mu.Lock()
	c.paused = true
	c.mu.Unlock()
}

// ResumeReading undoes PauseReading.
func (c *Client) ResumeReading() {
	c.mu.Lock()
	c.paused = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *Client) readLoop(gen int, conn io.Reader) {
	d := xml.NewDecoder(conn)
	depth := 0
	for {
		tok, err := d.Token()
		c.mu.Lock()
		if c.gen != gen {
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if err != nil {
			c.fail(err)
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 && t.Name.Local == "stream" {
				depth = 1
				continue
			}
			el, err := xmlel.Decode(d, t)
			if err != nil {
				c.fail(err)
				return
			}
			c.mu.Lock()
			if el.Name.Local == "error" && el.Name.Space == "http://etherx.jabber.org/streams" {
				if f := el.FirstElement(); f != nil {
					c.StreamError = f.Name.Local
				}
			}
			c.pending = append(c.pending, el)
			c.cond.Broadcast()
			c.mu.Unlock()
			if el.Name.Local == "proceed" || (el.Name.Local == "success" && el.Name.Space == NSSASL) {
				// The next bytes belong to a new stream (TLS or restart); stop
				// reading here so the owner can take over the connection. A
				// XEP-0388 <success/> is not followed by a restart.
				return
			}
		case xml.EndElement:
			c.fail(io.EOF)
			return
		}
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Next returns the next element, failing the test after DefaultTimeout.
func (c *Client) Next() *xmlel.Element {
	c.t.Helper()
	return c.Expect(func(*xmlel.Element) bool { return true })
}

// Expect returns the first queued or arriving element for which match is
// true, discarding nothing else. It fails the test on timeout or when the
// stream ends first.
func (c *Client) Expect(match func(*xmlel.Element) bool) *xmlel.Element {
	c.t.Helper()
	el, err := c.expect(match, DefaultTimeout)
	if err != nil {
		c.t.Fatalf("waiting for element: %v (pending: %s)", err, c.pendingString())
	}
	return el
}

// ExpectNone asserts that no matching element arrives within d.
func (c *Client) ExpectNone(d time.Duration, match func(*xmlel.Element) bool) {
	c.t.Helper()
	if el, err := c.expect(match, d); err == nil {
		c.t.Fatalf("unexpected element: %s", el)
	}
}

func (c *Client) expect(match func(*xmlel.Element) bool, d time.Duration) (*xmlel.Element, error) {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i, el := range c.pending {
			if match(el) {
				c.pending = append(c.pending[:i], c.pending[i+1:]...)
				return el, nil
			}
		}
		if c.err != nil {
			return nil, c.err
		}
		if time.Now().After(deadline) {
			return nil, errors.New("timeout")
		}
		c.cond.Wait()
	}
}

func (c *Client) pendingString() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, el := range c.pending {
		b.WriteString(el.String())
		b.WriteString(" ")
	}
	return b.String()
}

// WaitClosed waits until the server ends the stream and returns the stream
// error condition it sent ("" for a plain close).
func (c *Client) WaitClosed() string {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(DefaultTimeout)
	timer := time.AfterFunc(DefaultTimeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	for c.err == nil {
		if time.Now().After(deadline) {
			c.t.Fatalf("stream not closed by the server")
		}
		c.cond.Wait()
	}
	return c.StreamError
}

// StartTLS negotiates STARTTLS on an open stream (RFC 6120 §5) and restarts
// the stream; it returns the new features.
func (c *Client) StartTLS(cfg *tls.Config) *xmlel.Element {
	c.t.Helper()
	c.Raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	c.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "proceed" })
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(DefaultTimeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	return c.OpenStream()
}

// Auth runs SCRAM-SHA-256 (RFC 7677) for user and returns the server's final
// element (<success/> or <failure/>).
func (c *Client) Auth(user, password string) *xmlel.Element {
	c.t.Helper()
	client, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		c.t.Fatalf("scram client: %v", err)
	}
	return c.scram("SCRAM-SHA-256", client.NewConversation())
}

// AuthPlus runs SCRAM-SHA-256-PLUS with tls-exporter channel binding
// (RFC 9266) on the current TLS 1.3 connection.
func (c *Client) AuthPlus(user, password string) *xmlel.Element {
	c.t.Helper()
	client, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		c.t.Fatalf("scram client: %v", err)
	}
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		c.t.Fatal("AuthPlus needs TLS")
	}
	cs := tc.ConnectionState()
	cb, err := scram.NewTLSExporterBinding(&cs)
	if err != nil {
		c.t.Fatalf("channel binding: %v", err)
	}
	return c.scram("SCRAM-SHA-256-PLUS", client.NewConversationWithChannelBinding(cb))
}

func (c *Client) scram(mech string, conv *scram.ClientConversation) *xmlel.Element {
	c.t.Helper()
	first, _ := conv.Step("")
	c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>", mech, base64.StdEncoding.EncodeToString([]byte(first)))
	saslEl := func(e *xmlel.Element) bool { return e.Name.Space == "urn:ietf:params:xml:ns:xmpp-sasl" }
	el := c.Expect(saslEl)
	if el.Name.Local != "challenge" {
		return el
	}
	ch, _ := base64.StdEncoding.DecodeString(el.Text())
	final, err := conv.Step(string(ch))
	if err != nil {
		c.t.Fatalf("scram step: %v", err)
	}
	c.Send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", base64.StdEncoding.EncodeToString([]byte(final)))
	el = c.Expect(saslEl)
	if el.Name.Local == "success" {
		data, _ := base64.StdEncoding.DecodeString(el.Text())
		if _, err := conv.Step(string(data)); err != nil {
			c.t.Fatalf("server signature invalid: %v", err)
		}
	}
	return el
}

// Login runs STARTTLS, SCRAM-SHA-256 and resource binding, and leaves the
// client with a bound resource (not yet available). resource may be empty.
func (c *Client) Login(user, password, resource string) {
	c.t.Helper()
	c.OpenStream()
	c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: c.Domain})
	if el := c.Auth(user, password); el.Name.Local != "success" {
		c.t.Fatalf("auth failed: %s", el)
	}
	c.OpenStream()
	c.Bind(resource)
}

// Bind binds resource (RFC 6120 §7) and records the JID.
func (c *Client) Bind(resource string) {
	c.t.Helper()
	res := ""
	if resource != "" {
		res = "<resource>" + resource + "</resource>"
	}
	c.Send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>%s</bind></iq>", res)
	el := c.Expect(func(e *xmlel.Element) bool { return e.Get("id") == "bind1" })
	if el.Get("type") != "result" {
		c.t.Fatalf("bind failed: %s", el)
	}
	c.JID = el.Child("", "bind").ChildText("", "jid")
}

// IQ sends an IQ (payload as XML) and returns the response with the same id.
func (c *Client) IQ(typ, to, payload string) *xmlel.Element {
	c.t.Helper()
	id := fmt.Sprintf("iq%d", time.Now().UnixNano())
	toAttr := ""
	if to != "" {
		toAttr = " to='" + to + "'"
	}
	c.Send("<iq type='%s' id='%s'%s>%s</iq>", typ, id, toAttr, payload)
	return c.Expect(func(e *xmlel.Element) bool { return e.Name.Local == "iq" && e.Get("id") == id })
}

// ErrorCondition returns the defined condition of an error stanza, or "".
func ErrorCondition(st *xmlel.Element) string {
	if e := st.Child("", "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Name.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.Name.Local != "text" {
				return c.Name.Local
			}
		}
	}
	return ""
}

// IsMessage matches a message whose body is body.
func IsMessage(body string) func(*xmlel.Element) bool {
	return func(e *xmlel.Element) bool { return e.Name.Local == "message" && e.ChildText("", "body") == body }
}

// IsPresenceFrom matches a presence of type typ ("" for available) whose
// 'from' starts with from.
func IsPresenceFrom(from, typ string) func(*xmlel.Element) bool {
	return func(e *xmlel.Element) bool {
		return e.Name.Local == "presence" && e.Get("type") == typ && strings.HasPrefix(e.Get("from"), from)
	}
}

// EnableSM enables stream management with resumption (XEP-0198 §3) and
// returns the <enabled/> element.
func (c *Client) EnableSM() *xmlel.Element {
	c.t.Helper()
	c.Raw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	return c.Expect(func(e *xmlel.Element) bool { return e.Name.Space == "urn:xmpp:sm:3" && e.Name.Local != "r" })
}

// LoginResume authenticates on a new connection and sends <resume/> instead
// of binding (XEP-0198 §5); it returns the server's <resumed/> or <failed/>.
func (c *Client) LoginResume(user, password, previd string, h uint32) *xmlel.Element {
	c.t.Helper()
	c.OpenStream()
	c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: c.Domain})
	if el := c.Auth(user, password); el.Name.Local != "success" {
		c.t.Fatalf("auth failed: %s", el)
	}
	c.OpenStream()
	c.Send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>", previd, h)
	return c.Expect(func(e *xmlel.Element) bool {
		return e.Name.Space == "urn:xmpp:sm:3" && (e.Name.Local == "resumed" || e.Name.Local == "failed")
	})
}

// Drain removes every queued element matching match and returns them.
func (c *Client) Drain(match func(*xmlel.Element) bool) []*xmlel.Element {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out, kept []*xmlel.Element
	for _, el := range c.pending {
		if match(el) {
			out = append(out, el)
		} else {
			kept = append(kept, el)
		}
	}
	c.pending = kept
	return out
}
