package server_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"github.com/xdg-go/scram"
)

const (
	nsFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	nsStream  = "http://etherx.jabber.org/streams"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
)

// web serves the server's web transports on an HTTPS port of the project's
// HTTP server (as `hearth serve` does) and returns its address.
func (e *env) web(opts server.BOSHOptions) string {
	e.t.Helper()
	cert, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(e.dir, "tls"), domain)
	if err != nil {
		e.t.Fatal(err)
	}
	web := httpd.New(slog.New(slog.NewTextHandler(e.logs, nil)))
	web.Handle(server.WebSocketPath, e.srv.WebSocketHandler())
	web.Handle(server.BOSHPath, e.srv.BOSHHandler(opts))
	web.RegisterOnShutdown(e.srv.ShutdownWeb)
	addr, err := web.ListenTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		web.Shutdown(ctx)
	})
	return addr.String()
}

// wsClient is a raw RFC 7395 client: every message must be one standalone
// XML element.
type wsClient struct {
	t       *testing.T
	c       *websocket.Conn
	tls     *tls.ConnectionState
	pending []*xmlel.Element
	raw     []string // the raw text of every message received
	JID     string
}

func dialWS(t *testing.T, addr string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.DefaultTimeout)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "wss://"+addr+server.WebSocketPath, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13},
		}},
		Subprotocols: []string{"xmpp"},
	})
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	if c.Subprotocol() != "xmpp" {
		t.Fatalf("subprotocol %q, want xmpp", c.Subprotocol())
	}
	c.SetReadLimit(-1)
	w := &wsClient{t: t, c: c, tls: res.TLS}
	t.Cleanup(func() { c.CloseNow() })
	return w
}

func (w *wsClient) send(format string, args ...any) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.DefaultTimeout)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(format, args...))); err != nil {
		w.t.Fatalf("websocket write: %v", err)
	}
}

// read returns the next message as an element; it fails the test on a
// message that is not one standalone element.
func (w *wsClient) read() (*xmlel.Element, error) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.DefaultTimeout)
	defer cancel()
	typ, data, err := w.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		w.t.Fatalf("binary message %q", data)
	}
	w.raw = append(w.raw, string(data))
	el, err := xmlel.Parse(string(data))
	if err != nil {
		w.t.Fatalf("message %q is not one XML element: %v", data, err)
	}
	if got := strings.TrimSpace(string(data)); got != el.String() && !strings.HasSuffix(got, ">") {
		w.t.Fatalf("message %q has trailing data", data)
	}
	return el, nil
}

// expect returns the first queued or arriving element that matches.
func (w *wsClient) expect(match func(*xmlel.Element) bool) *xmlel.Element {
	w.t.Helper()
	for i, el := range w.pending {
		if match(el) {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			return el
		}
	}
	for range 100 {
		el, err := w.read()
		if err != nil {
			w.t.Fatalf("waiting for an element: %v (queued: %v)", err, w.pending)
		}
		if match(el) {
			return el
		}
		w.pending = append(w.pending, el)
	}
	w.t.Fatalf("no matching element among 100")
	return nil
}

func named(space, local string) func(*xmlel.Element) bool {
	return func(e *xmlel.Element) bool { return e.Name.Space == space && e.Name.Local == local }
}

// open sends <open/> and returns the stream features after the server's <open/>.
func (w *wsClient) open() *xmlel.Element {
	w.t.Helper()
	// Some clients put an XML declaration first; it is ignored.
	w.send("<?xml version='1.0'?><open xmlns='%s' to='%s' version='1.0'/>", nsFraming, domain)
	o := w.expect(func(*xmlel.Element) bool { return true })
	if o.Name.Space != nsFraming || o.Name.Local != "open" || o.Get("from") != domain || o.Get("id") == "" || o.Get("version") != "1.0" {
		w.t.Fatalf("first message after <open/>: %s, want the server's <open/>", o)
	}
	return w.expect(named(nsStream, "features"))
}

// scram authenticates with SCRAM-SHA-256, or SCRAM-SHA-256-PLUS with
// tls-exporter on the WebSocket's TLS connection.
func (w *wsClient) scram(user, password string, plus bool) *xmlel.Element {
	w.t.Helper()
	client, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		w.t.Fatal(err)
	}
	conv, mech := client.NewConversation(), "SCRAM-SHA-256"
	if plus {
		cb, err := scram.NewTLSExporterBinding(w.tls)
		if err != nil {
			w.t.Fatal(err)
		}
		conv, mech = client.NewConversationWithChannelBinding(cb), "SCRAM-SHA-256-PLUS"
	}
	first, _ := conv.Step("")
	w.send("<auth xmlns='%s' mechanism='%s'>%s</auth>", nsSASL, mech, base64.StdEncoding.EncodeToString([]byte(first)))
	isSASL := func(e *xmlel.Element) bool { return e.Name.Space == nsSASL }
	el := w.expect(isSASL)
	if el.Name.Local != "challenge" {
		return el
	}
	ch, _ := base64.StdEncoding.DecodeString(el.Text())
	final, err := conv.Step(string(ch))
	if err != nil {
		w.t.Fatal(err)
	}
	w.send("<response xmlns='%s'>%s</response>", nsSASL, base64.StdEncoding.EncodeToString([]byte(final)))
	el = w.expect(isSASL)
	if el.Name.Local == "success" {
		data, _ := base64.StdEncoding.DecodeString(el.Text())
		if _, err := conv.Step(string(data)); err != nil {
			w.t.Fatalf("server signature: %v", err)
		}
	}
	return el
}

// login opens the stream, authenticates, restarts with a new <open/> and
// binds resource.
func (w *wsClient) login(user, resource string, plus bool) {
	w.t.Helper()
	f := w.open()
	if f.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") != nil {
		w.t.Fatalf("STARTTLS offered over WebSocket: %s", f)
	}
	if el := w.scram(user, "pw-"+user, plus); el.Name.Local != "success" {
		w.t.Fatalf("auth: %s", el)
	}
	f = w.open()
	if f.Child(nsBind, "bind") == nil {
		w.t.Fatalf("no bind feature after auth: %s", f)
	}
	w.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='%s'><resource>%s</resource></bind></iq>", nsBind, resource)
	el := w.expect(func(e *xmlel.Element) bool { return e.Get("id") == "b1" })
	if el.Get("type") != "result" {
		w.t.Fatalf("bind: %s", el)
	}
	w.JID = el.Child(nsBind, "bind").ChildText(nsBind, "jid")
}

// online sends initial presence and waits for its reflection.
func (w *wsClient) online() {
	w.t.Helper()
	w.send("<presence xmlns='jabber:client'/>")
	w.expect(func(e *xmlel.Element) bool { return e.Name.Local == "presence" && e.Get("from") == w.JID })
}

// closed waits for the server's <close/> (after skipping other elements)
// and then for the end of the WebSocket connection.
func (w *wsClient) closed() {
	w.t.Helper()
	w.expect(named(nsFraming, "close"))
	for range 10 {
		if _, err := w.read(); err != nil {
			return
		}
	}
	w.t.Fatal("connection still open after <close/>")
}

// TestWebSocketLoginRosterAndChat: SCRAM, restart with <open/>, bind and a
// roster get over RFC 7395, then messages both ways with a TCP client; each
// message is one standalone element with its namespaces declared.
func TestWebSocketLoginRosterAndChat(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	addr := e.web(server.BOSHOptions{})
	w := dialWS(t, addr)
	f := w.open()
	mechs := f.Child(nsSASL, "mechanisms")
	if mechs == nil || !strings.Contains(mechs.String(), ">SCRAM-SHA-256<") || !strings.Contains(mechs.String(), "SCRAM-SHA-256-PLUS") {
		t.Fatalf("features: %s", f)
	}
	if !strings.Contains(w.raw[1], "xmlns:stream='http://etherx.jabber.org/streams'") {
		t.Fatalf("<stream:features/> message does not declare the stream prefix: %s", w.raw[1])
	}
	if el := w.scram("alice", "pw-alice", false); el.Name.Local != "success" {
		t.Fatalf("auth: %s", el)
	}
	w.open()
	w.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='%s'><resource>web</resource></bind></iq>", nsBind)
	if el := w.expect(func(e *xmlel.Element) bool { return e.Get("id") == "b1" }); el.Get("type") != "result" {
		t.Fatalf("bind: %s", el)
	}
	w.send("<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
	r := w.expect(func(e *xmlel.Element) bool { return e.Get("id") == "r1" })
	if r.Name.Space != server.NSClient || r.Get("type") != "result" || r.Child("jabber:iq:roster", "query") == nil {
		t.Fatalf("roster result: %s", r)
	}
	w.send("<presence xmlns='jabber:client'/>")

	bob := e.online("bob", "tcp")
	w.send("<message xmlns='jabber:client' to='bob@%s' type='chat'><body>hello from the web</body></message>", domain)
	m := bob.Expect(xmpptest.IsMessage("hello from the web"))
	if m.Get("from") != "alice@"+domain+"/web" {
		t.Fatalf("from = %q", m.Get("from"))
	}
	bob.Send("<message to='alice@%s/web' type='chat'><body>hello from tcp</body></message>", domain)
	got := w.expect(named(server.NSClient, "message"))
	if got.ChildText(server.NSClient, "body") != "hello from tcp" || got.Get("from") != bob.JID {
		t.Fatalf("message over WebSocket: %s", got)
	}
}

// TestWebSocketSCRAMPlus: -PLUS binds to the HTTPS connection's TLS
// (tls-exporter, RFC 9266) under the WebSocket.
func TestWebSocketSCRAMPlus(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	w := dialWS(t, e.web(server.BOSHOptions{}))
	w.login("alice", "plus", true)
	if w.JID != "alice@"+domain+"/plus" {
		t.Fatalf("JID %q", w.JID)
	}
}

// TestWebSocketCloseHandshake: the client's <close/> is answered with
// <close/> (RFC 7395 §3.6), the session ends (a directed-presence recipient
// gets unavailable) and the WebSocket closes.
func TestWebSocketCloseHandshake(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	bob := e.online("bob", "tcp")
	w := dialWS(t, e.web(server.BOSHOptions{}))
	w.login("alice", "web", false)
	w.online()
	w.send("<presence xmlns='jabber:client' to='%s'/>", bob.JID)
	bob.Expect(xmpptest.IsPresenceFrom(w.JID, ""))
	w.send("<close xmlns='%s'/>", nsFraming)
	w.closed()
	bob.Expect(xmpptest.IsPresenceFrom(w.JID, "unavailable"))
}

// TestWebSocketStreamErrors: stream errors are standalone <stream:error/>
// messages followed by <close/> and the end of the connection (RFC 7395
// §3.6.1); a message larger than the stanza limit is policy-violation.
func TestWebSocketStreamErrors(t *testing.T) {
	e := newEnv(t, server.Limits{MaxStanzaBytes: 8 << 10})
	e.addUser("alice", "pw-alice")
	addr := e.web(server.BOSHOptions{})
	streamError := func(w *wsClient, cond string) {
		t.Helper()
		el := w.expect(named(nsStream, "error"))
		if el.Child(server.NSStreams, cond) == nil {
			t.Fatalf("stream error %s, want %s", el, cond)
		}
		last := w.raw[len(w.raw)-1]
		if !strings.Contains(last, "xmlns:stream='"+nsStream+"'") {
			t.Fatalf("stream error message does not declare the stream prefix: %s", last)
		}
		w.closed()
	}

	t.Run("too large", func(t *testing.T) {
		w := dialWS(t, addr)
		w.login("alice", "big", false)
		w.send("<message xmlns='jabber:client' to='alice@%s'><body>%s</body></message>", domain, strings.Repeat("x", 64<<10))
		streamError(w, "policy-violation")
	})
	t.Run("TCP stream header", func(t *testing.T) {
		w := dialWS(t, addr)
		w.send("<stream:stream xmlns='jabber:client' xmlns:stream='%s' to='%s' version='1.0'>", nsStream, domain)
		o := w.expect(func(*xmlel.Element) bool { return true })
		if o.Name.Space != nsFraming || o.Name.Local != "open" {
			t.Fatalf("first message %s, want <open/> before the error", o)
		}
		streamError(w, "invalid-namespace")
	})
	t.Run("unknown host", func(t *testing.T) {
		w := dialWS(t, addr)
		w.send("<open xmlns='%s' to='elsewhere.example' version='1.0'/>", nsFraming)
		streamError(w, "host-unknown")
	})
	t.Run("not well-formed", func(t *testing.T) {
		w := dialWS(t, addr)
		w.login("alice", "bad", false)
		w.send("<message xmlns='jabber:client'><body>unclosed</message>")
		streamError(w, "not-well-formed")
	})
	t.Run("binary message", func(t *testing.T) {
		w := dialWS(t, addr)
		w.open()
		ctx, cancel := context.WithTimeout(context.Background(), xmpptest.DefaultTimeout)
		defer cancel()
		if err := w.c.Write(ctx, websocket.MessageBinary, []byte("<presence xmlns='jabber:client'/>")); err != nil {
			t.Fatal(err)
		}
		streamError(w, "bad-format")
	})
}

// TestWebSocketShutdown: at shutdown a WebSocket session gets
// system-shutdown and <close/>, like a TCP one.
func TestWebSocketShutdown(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	w := dialWS(t, e.web(server.BOSHOptions{}))
	w.login("alice", "web", false)
	negotiating := dialWS(t, e.web(server.BOSHOptions{}))
	negotiating.open()
	e.srv.ShutdownWeb()
	for _, c := range []*wsClient{w, negotiating} {
		el := c.expect(named(nsStream, "error"))
		if el.Child(server.NSStreams, "system-shutdown") == nil {
			t.Fatalf("stream error %s, want system-shutdown", el)
		}
		c.closed()
	}
}

// TestWebSocketStreamManagementResume: a WebSocket dropped without <close/>
// leaves a resumable session (RFC 7395 §3.6, XEP-0198 §5); a new WebSocket
// resumes it and gets what was sent meanwhile.
func TestWebSocketStreamManagementResume(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	addr := e.web(server.BOSHOptions{})
	w := dialWS(t, addr)
	w.login("alice", "phone", false)
	w.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	enabled := w.expect(named(server.NSSM, "enabled"))
	id := enabled.Get("id")
	if id == "" {
		t.Fatalf("enabled: %s", enabled)
	}
	w.c.CloseNow() // no <close/>: the connection is lost

	bob := e.online("bob", "tcp")
	bob.Send("<message to='%s' type='chat'><body>while you were away</body></message>", w.JID)

	w2 := dialWS(t, addr)
	w2.open()
	if el := w2.scram("alice", "pw-alice", false); el.Name.Local != "success" {
		t.Fatalf("auth: %s", el)
	}
	w2.open()
	w2.send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", id)
	if el := w2.expect(func(e *xmlel.Element) bool { return e.Name.Space == server.NSSM && e.Name.Local != "r" }); el.Name.Local != "resumed" {
		t.Fatalf("resume: %s", el)
	}
	m := w2.expect(named(server.NSClient, "message"))
	if m.ChildText(server.NSClient, "body") != "while you were away" {
		t.Fatalf("after resumption: %s", m)
	}
}

// TestWebSocketRefusals: plain HTTP and a handshake without the "xmpp"
// subprotocol are refused.
func TestWebSocketRefusals(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	addr := e.web(server.BOSHOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.DefaultTimeout)
	defer cancel()
	_, res, err := websocket.Dial(ctx, "wss://"+addr+server.WebSocketPath, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	})
	if err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("without subprotocol: %v %v, want 400", err, res)
	}

	web := httpd.New(nil)
	web.Handle(server.WebSocketPath, e.srv.WebSocketHandler())
	plain, err := web.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Shutdown(context.Background()) })
	_, res, err = websocket.Dial(ctx, "ws://"+plain.String()+server.WebSocketPath, &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("over plain HTTP: %v %v, want 403", err, res)
	}
}

// TestWebSocketLimits: the TCP limits hold for WebSocket streams too: the
// connections per address (policy-violation) and the authentication timeout
// (connection-timeout), each as a framed stream error.
func TestWebSocketLimits(t *testing.T) {
	e := newEnv(t, server.Limits{MaxConnsPerIP: 1, AuthTimeout: time.Second})
	addr := e.web(server.BOSHOptions{})
	first := dialWS(t, addr)
	first.open()
	second := dialWS(t, addr)
	if el := second.expect(named(nsStream, "error")); el.Child(server.NSStreams, "policy-violation") == nil {
		t.Fatalf("second connection from one address: %s", el)
	}
	second.closed()
	// The first one never authenticates.
	if el := first.expect(named(nsStream, "error")); el.Child(server.NSStreams, "connection-timeout") == nil {
		t.Fatalf("unauthenticated connection: %s", el)
	}
	first.closed()
}
