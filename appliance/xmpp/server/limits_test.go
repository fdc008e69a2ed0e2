package server_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// Each bad input ends only the offending stream, with the right stream error
// (RFC 6120 §4.9.3), and the server keeps serving others.
func TestBadInputStreamErrors(t *testing.T) {
	e := newEnv(t, server.Limits{MaxStanzaBytes: 16 << 10})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	bystander := e.online("bob", "b")

	cases := []struct {
		name, input, cond string
	}{
		{"malformed XML", "<message><body>x</wrong></message>", "not-well-formed"},
		{"oversized stanza", "<message to='bob@" + domain + "'><body>" + strings.Repeat("A", 64<<10) + "</body></message>", "policy-violation"},
		{"comment", "<!-- hi --><message/>", "restricted-xml"},
		{"processing instruction", "<?evil x?><message/>", "restricted-xml"},
		{"DOCTYPE", "<!DOCTYPE foo [<!ENTITY x 'y'>]><message/>", "restricted-xml"},
		{"forged from", "<message from='bob@" + domain + "/b' to='bob@" + domain + "'><body>fake</body></message>", "invalid-from"},
		{"unknown top-level element", "<foo xmlns='jabber:client'/>", "unsupported-stanza-type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.login("alice", "x")
			c.Raw(tc.input)
			if got := c.WaitClosed(); got != tc.cond {
				t.Fatalf("stream error %q, want %q", got, tc.cond)
			}
			if !strings.Contains(e.logs.String(), tc.cond) {
				t.Fatalf("no log line for %s", tc.cond)
			}
		})
	}
	bystander.ExpectNone(100*time.Millisecond, xmpptest.IsMessage("fake"))
	// The bystander still works.
	if r := bystander.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); r.Get("type") != "result" {
		t.Fatalf("bystander broken: %s", r)
	}
}

func TestBadInputBeforeAuth(t *testing.T) {
	e := newEnv(t, server.Limits{MaxStanzaBytes: 16 << 10, AuthTimeout: 500 * time.Millisecond})
	// Garbage instead of a stream header: the server still opens its stream
	// and then sends the error (RFC 6120 §4.9.1.3).
	c := xmpptest.Dial(t, e.addr, domain)
	c.StartReader("<<<not xml")
	if got := c.WaitClosed(); got != "not-well-formed" {
		t.Fatalf("got %q", got)
	}
	// Unknown host.
	c = xmpptest.Dial(t, e.addr, "other.test")
	c.StartReader("<?xml version='1.0'?><stream:stream to='other.test' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
	if got := c.WaitClosed(); got != "host-unknown" {
		t.Fatalf("got %q", got)
	}
	// Unauthenticated connection that idles: connection-timeout.
	c = xmpptest.Dial(t, e.addr, domain)
	c.OpenStream()
	start := time.Now()
	if got := c.WaitClosed(); got != "connection-timeout" {
		t.Fatalf("got %q", got)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("timeout took %v", time.Since(start))
	}
	// Oversized element during negotiation.
	c = xmpptest.Dial(t, e.addr, domain)
	c.OpenStream()
	c.Raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls' junk='" + strings.Repeat("A", 32<<10) + "'/>")
	if got := c.WaitClosed(); got != "policy-violation" {
		t.Fatalf("got %q", got)
	}
	// SASL before TLS is not offered: the features list only has STARTTLS.
	c = xmpptest.Dial(t, e.addr, domain)
	f := c.OpenStream()
	if f.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms") != nil || f.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") == nil {
		t.Fatalf("pre-TLS features: %s", f)
	}
}

func TestConnectionsPerIP(t *testing.T) {
	e := newEnv(t, server.Limits{MaxConnsPerIP: 2})
	c1 := xmpptest.Dial(t, e.addr, domain)
	c1.OpenStream()
	c2 := xmpptest.Dial(t, e.addr, domain)
	c2.OpenStream()
	c3 := xmpptest.Dial(t, e.addr, domain)
	c3.StartReader("<?xml version='1.0'?><stream:stream to='" + domain + "' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
	if got := c3.WaitClosed(); got != "policy-violation" {
		t.Fatalf("third connection: %q", got)
	}
	c1.Close()
	time.Sleep(100 * time.Millisecond)
	c4 := xmpptest.Dial(t, e.addr, domain)
	c4.OpenStream() // a slot is free again
}

func TestWrongPasswordAndUnknownUser(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	for _, tc := range []struct{ user, pw string }{{"alice", "wrong"}, {"nobody", "whatever"}} {
		c := xmpptest.Dial(t, e.addr, domain)
		c.OpenStream()
		c.StartTLS(&tls.Config{InsecureSkipVerify: true})
		el := c.Auth(tc.user, tc.pw)
		if el.Name.Local != "failure" || el.Child("", "not-authorized") == nil {
			t.Fatalf("%s: %s", tc.user, el)
		}
	}
}

func TestLoginThrottle(t *testing.T) {
	e := newEnv(t, server.Limits{LoginFailures: 2})
	e.addUser("alice", "pw-alice")
	var last *xmlel.Element
	for i := 0; i < 3; i++ {
		c := xmpptest.Dial(t, e.addr, domain)
		c.OpenStream()
		c.StartTLS(&tls.Config{InsecureSkipVerify: true})
		last = c.Auth("alice", "wrong")
	}
	if last.Child("", "temporary-auth-failure") == nil {
		t.Fatalf("third failure not throttled: %s", last)
	}
	// Even the right password is refused while throttled.
	c := xmpptest.Dial(t, e.addr, domain)
	c.OpenStream()
	c.StartTLS(&tls.Config{InsecureSkipVerify: true})
	if el := c.Auth("alice", "pw-alice"); el.Name.Local != "failure" {
		t.Fatalf("throttled login succeeded: %s", el)
	}
}

func TestDirectTLSWithALPN(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	c := xmpptest.DialTLS(t, e.tlsAddr, domain, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}, MinVersion: tls.VersionTLS13})
	if p := c.Conn().(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "xmpp-client" {
		t.Fatalf("ALPN = %q", p)
	}
	c.OpenStream()
	if el := c.Auth("alice", "pw-alice"); el.Name.Local != "success" {
		t.Fatalf("auth: %s", el)
	}
	c.OpenStream()
	c.Bind("tls")
	// TLS 1.1 is refused.
	raw, err := net.Dial("tcp", e.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	old := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	old.SetDeadline(time.Now().Add(5 * time.Second))
	if err := old.Handshake(); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

// A client that never reads is cut off once its queue bound is hit; the
// server and other sessions go on.
func TestSlowReaderQueueBound(t *testing.T) {
	e := newEnv(t, server.Limits{SendQueueBytes: 64 << 10, ReadBytesPerSecond: 1 << 30})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	a := e.online("alice", "a")
	b := e.online("bob", "b")
	// Bob's client stops reading: the flood exceeds the socket buffers plus
	// the queue bound.
	b.PauseReading()
	body := strings.Repeat("x", 8<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 8000; i++ {
			if len(e.srv.Sessions("bob")) == 0 {
				return
			}
			// Headlines: once bob is gone they are dropped, not bounced back.
			a.Send("<message to='%s' type='headline'><body>%s</body></message>", b.JID, body)
		}
	}()
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for len(e.srv.Sessions("bob")) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(e.srv.Sessions("bob")) != 0 {
		t.Fatal("the session outlived its queue bound")
	}
	if !strings.Contains(e.logs.String(), "send queue full") {
		t.Fatalf("no log line for the queue bound")
	}
	if r := a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); r.Get("type") != "result" {
		t.Fatalf("sender broken: %s", r)
	}
}
