package modtest

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
)

// Client is a real c2s client connected to an Env's server.
type Client struct {
	T    testing.TB
	JID  jid.JID
	Sess *xmpp.Session
	r    xmlstream.TokenReadCloser
	n    int
}

// Connect logs user in over a real connection (STARTTLS, SASL PLAIN,
// resource binding) and returns the client. The server starts listening on
// a loopback port on first use; everything is closed when the test ends.
func (e *Env) Connect(user, password string) *Client {
	e.T.Helper()
	c, err := e.Dial(user, password)
	if err != nil {
		e.T.Fatalf("connecting as %s: %v", user, err)
	}
	return c
}

// Dial is Connect returning the negotiation error (for example a failed
// authentication) instead of failing the test.
func (e *Env) Dial(user, password string) (*Client, error) {
	e.T.Helper()
	conn, err := net.Dial("tcp", e.Addr())
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	origin := jid.MustParse(user + "@" + Domain)
	sess, err := xmpp.NewClientSession(ctx, origin, conn,
		xmpp.StartTLS(&tls.Config{ServerName: Domain, InsecureSkipVerify: true}),
		xmpp.SASL("", password, sasl.Plain),
		xmpp.BindResource(),
		disco.StreamFeature(),
	)
	if err != nil {
		return nil, err
	}
	return &Client{T: e.T, JID: sess.LocalAddr(), Sess: sess, r: sess.TokenReader()}, nil
}

// Addr returns the loopback address of the server's STARTTLS c2s listener,
// starting it on first use (register every module before); the server is
// shut down when the test ends.
func (e *Env) Addr() string {
	e.listenOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		addr, err := e.S.ListenC2S(ctx, "127.0.0.1:0", false)
		if err != nil {
			e.T.Fatal(err)
		}
		e.addr = addr.String()
		e.T.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			e.S.Shutdown(sctx)
			cancel()
		})
	})
	return e.addr
}

// ServerCaps returns the XEP-0115 caps stream feature the server listed
// after authentication, if any.
func (c *Client) ServerCaps() (disco.Caps, bool) { return disco.ServerCaps(c.Sess) }

// Send writes a stanza.
func (c *Client) Send(st *xmlel.Element) {
	c.T.Helper()
	conn := c.Sess.Conn()
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(st.Bytes(server.NSClient)); err != nil {
		c.T.Fatal(err)
	}
}

// Next reads the next top-level element from the server.
func (c *Client) Next() *xmlel.Element {
	c.T.Helper()
	c.Sess.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		tok, err := c.r.Token()
		if err != nil {
			c.T.Fatal(err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			el, err := xmlel.Decode(c.r, start)
			if err != nil {
				c.T.Fatal(err)
			}
			return el
		}
	}
}

// Request sends an IQ of type typ carrying payload to to ("" for no 'to')
// and returns the response, skipping any other stanza received meanwhile.
func (c *Client) Request(typ, to, payload string) *xmlel.Element {
	c.T.Helper()
	c.n++
	id := "q" + strconv.Itoa(c.n)
	st := xmlel.New(server.NSClient, "iq", "type", typ, "id", id)
	st.Set("to", to)
	st.Add(xmlel.MustParse(payload))
	c.Send(st)
	for {
		el := c.Next()
		if el.Name.Local == "iq" && el.Get("id") == id {
			return el
		}
	}
}

// ErrorCondition returns the stanza error condition of an IQ response, or ""
// for a result.
func ErrorCondition(iq *xmlel.Element) string {
	if iq.Get("type") != "error" {
		return ""
	}
	if e := iq.Child(server.NSClient, "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Name.Space == server.NSStanzas && c.Name.Local != "text" {
				return c.Name.Local
			}
		}
	}
	return "?"
}

// Close ends the client's stream and connection.
func (c *Client) Close() {
	c.Sess.Close()
	c.Sess.Conn().Close()
}

// Eventually polls cond every 10ms until it holds, failing the test after 5
// seconds.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WantIQError fails the test unless iq is an IQ error with condition want.
func WantIQError(t testing.TB, iq *xmlel.Element, want string) {
	t.Helper()
	if got := ErrorCondition(iq); got != want {
		t.Fatalf("got %s, want error %s", iq, want)
	}
}
