package server_test

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"github.com/xdg-go/scram"
)

const nsHTTPBind = "http://jabber.org/protocol/httpbind"

// boshClient is a raw XEP-0124/XEP-0206 client.
type boshClient struct {
	t   *testing.T
	url string
	hc  *http.Client
	sid string
	rid uint64
	JID string
}

func newBOSH(t *testing.T, addr string) *boshClient {
	b := &boshClient{
		t:   t,
		url: "https://" + addr + server.BOSHPath,
		hc: &http.Client{Timeout: 2 * xmpptest.DefaultTimeout, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		}},
		rid: 1_000_000,
	}
	// A pooled connection that never carried a request delays the HTTP
	// server's shutdown by 5 s (net/http treats new connections as active).
	t.Cleanup(b.hc.CloseIdleConnections)
	return b
}

// post sends one raw request and returns the parsed response <body/> and
// its text.
func (b *boshClient) post(body string) (*xmlel.Element, string) {
	b.t.Helper()
	res, err := b.hc.Post(b.url, "text/xml; charset=utf-8", strings.NewReader(body))
	if err != nil {
		b.t.Fatalf("POST: %v", err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b.t.Fatalf("HTTP %d: %s", res.StatusCode, data)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "*" {
		b.t.Fatalf("no CORS header: %v", res.Header)
	}
	el, err := xmlel.Parse(string(data))
	if err != nil || el.Name.Space != nsHTTPBind || el.Name.Local != "body" {
		b.t.Fatalf("response %q is not a BOSH <body/>: %v", data, err)
	}
	return el, string(data)
}

// body builds the next request with attrs and payload; it returns the
// request text and its rid.
func (b *boshClient) body(attrs, payload string) (string, uint64) {
	b.rid++
	return fmt.Sprintf("<body xmlns='%s' xmlns:xmpp='urn:xmpp:xbosh' sid='%s' rid='%d' %s>%s</body>", nsHTTPBind, b.sid, b.rid, attrs, payload), b.rid
}

// request sends the next request and waits for its response.
func (b *boshClient) request(attrs, payload string) *xmlel.Element {
	b.t.Helper()
	req, _ := b.body(attrs, payload)
	el, _ := b.post(req)
	return el
}

// send sends payload with a roster get, whose result makes the server
// answer at once (a request without output would be held for 'wait').
func (b *boshClient) send(payload string) *xmlel.Element {
	b.t.Helper()
	return b.request("", payload+"<iq xmlns='jabber:client' type='get' id='flush'><query xmlns='jabber:iq:roster'/></iq>")
}

type boshResult struct {
	el  *xmlel.Element
	raw string
}

// async sends the next request in the background.
func (b *boshClient) async(payload string) <-chan boshResult {
	req, _ := b.body("", payload)
	ch := make(chan boshResult, 1)
	go func() {
		res, err := b.hc.Post(b.url, "text/xml; charset=utf-8", strings.NewReader(req))
		if err != nil {
			ch <- boshResult{raw: err.Error()}
			return
		}
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		el, _ := xmlel.Parse(string(data))
		ch <- boshResult{el: el, raw: string(data)}
	}()
	return ch
}

func (b *boshClient) wait(ch <-chan boshResult) *xmlel.Element {
	b.t.Helper()
	select {
	case r := <-ch:
		if r.el == nil {
			b.t.Fatalf("request failed: %s", r.raw)
		}
		return r.el
	case <-time.After(2 * xmpptest.DefaultTimeout):
		b.t.Fatal("no response")
		return nil
	}
}

// create starts a session and returns the creation response.
func (b *boshClient) create(wait int) *xmlel.Element {
	b.t.Helper()
	el, _ := b.post(fmt.Sprintf("<body xmlns='%s' xmlns:xmpp='urn:xmpp:xbosh' content='text/xml; charset=utf-8' hold='1' rid='%d' to='%s' ver='1.6' wait='%d' ack='1' xml:lang='en' xmpp:version='1.0'/>", nsHTTPBind, b.rid, domain, wait))
	b.sid = el.Get("sid")
	return el
}

// login creates a session, authenticates with SCRAM-SHA-256, restarts the
// stream and binds resource.
func (b *boshClient) login(user, resource string) {
	b.t.Helper()
	el := b.create(60)
	if b.sid == "" || el.Child(nsStream, "features") == nil {
		b.t.Fatalf("creation response: %s", el)
	}
	client, _ := scram.SHA256.NewClient(user, "pw-"+user, "")
	conv := client.NewConversation()
	first, _ := conv.Step("")
	el = b.request("", fmt.Sprintf("<auth xmlns='%s' mechanism='SCRAM-SHA-256'>%s</auth>", nsSASL, base64.StdEncoding.EncodeToString([]byte(first))))
	ch := el.Child(nsSASL, "challenge")
	if ch == nil {
		b.t.Fatalf("expected a challenge: %s", el)
	}
	data, _ := base64.StdEncoding.DecodeString(ch.Text())
	final, err := conv.Step(string(data))
	if err != nil {
		b.t.Fatal(err)
	}
	el = b.request("", fmt.Sprintf("<response xmlns='%s'>%s</response>", nsSASL, base64.StdEncoding.EncodeToString([]byte(final))))
	if el.Child(nsSASL, "success") == nil {
		b.t.Fatalf("expected success: %s", el)
	}
	el = b.request("to='"+domain+"' xml:lang='en' xmpp:restart='true'", "")
	if f := el.Child(nsStream, "features"); f == nil || f.Child(nsBind, "bind") == nil {
		b.t.Fatalf("restart response: %s", el)
	}
	el = b.request("", fmt.Sprintf("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='%s'><resource>%s</resource></bind></iq>", nsBind, resource))
	iq := el.Child(server.NSClient, "iq")
	if iq == nil || iq.Get("type") != "result" {
		b.t.Fatalf("bind response: %s", el)
	}
	b.JID = iq.Child(nsBind, "bind").ChildText(nsBind, "jid")
}

// TestBOSHSession: session creation with the XEP-0124/XEP-0206 attributes
// and features, SCRAM, restart, bind, presence, messages both ways with a
// TCP client (long polling: a held request returns when a message arrives)
// and termination.
func TestBOSHSession(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	addr := e.web(server.BOSHOptions{Inactivity: 30 * time.Second})
	b := newBOSH(t, addr)
	el := b.create(60)
	for attr, want := range map[string]string{
		"wait": "60", "inactivity": "30", "requests": "2", "hold": "1", "ver": "1.6",
		"from": domain, "ack": strconv.FormatUint(b.rid, 10),
	} {
		if got := el.Get(attr); got != want {
			t.Errorf("creation response %s=%q, want %q: %s", attr, got, want, el)
		}
	}
	if len(b.sid) < 16 || el.Get("polling") == "" {
		t.Errorf("creation response sid/polling: %s", el)
	}
	var version, authid string
	for _, a := range el.Attr {
		switch {
		case a.Name.Space == "urn:xmpp:xbosh" && a.Name.Local == "version":
			version = a.Value
		case a.Name.Local == "authid":
			authid = a.Value
		}
	}
	if version != "1.0" || authid == "" {
		t.Errorf("creation response xmpp:version=%q authid=%q: %s", version, authid, el)
	}
	f := el.Child(nsStream, "features")
	if f == nil || f.Child(nsSASL, "mechanisms") == nil || f.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") != nil {
		t.Fatalf("features: %s", el)
	}
	if strings.Contains(f.Child(nsSASL, "mechanisms").String(), "PLUS") {
		t.Errorf("-PLUS offered over BOSH, whose requests are not one TLS channel: %s", f)
	}
	b.sid = ""
	b.rid += 10

	b.login("alice", "web")
	if b.JID != "alice@"+domain+"/web" {
		t.Fatalf("JID %q", b.JID)
	}
	if el := b.request("", "<presence xmlns='jabber:client'/>"); el.Child(server.NSClient, "presence") == nil {
		t.Fatalf("presence reflection: %s", el)
	}
	bob := e.online("bob", "tcp")
	b.send(fmt.Sprintf("<presence xmlns='jabber:client' to='%s'/>", bob.JID))
	bob.Expect(xmpptest.IsPresenceFrom(b.JID, ""))

	sent := b.async(fmt.Sprintf("<message xmlns='jabber:client' to='%s' type='chat'><body>hi from bosh</body></message>", bob.JID))
	bob.Expect(xmpptest.IsMessage("hi from bosh"))
	poll := b.async("")
	if el := b.wait(sent); len(el.Elements()) != 0 {
		t.Fatalf("answer to the message request: %s", el)
	}
	bob.Send("<message to='%s' type='chat'><body>hi from tcp</body></message>", b.JID)
	el = b.wait(poll)
	if m := el.Child(server.NSClient, "message"); m == nil || m.ChildText(server.NSClient, "body") != "hi from tcp" {
		t.Fatalf("long poll: %s", el)
	}

	el = b.request("type='terminate'", "<presence xmlns='jabber:client' type='unavailable'/>")
	if el.Get("type") != "terminate" {
		t.Fatalf("terminate response: %s", el)
	}
	bob.Expect(xmpptest.IsPresenceFrom(b.JID, "unavailable"))
	if el := b.request("", ""); el.Get("type") != "terminate" || el.Get("condition") != "item-not-found" {
		t.Fatalf("request after terminate: %s", el)
	}
}

// TestBOSHRequestIDs: a repeated rid gets the same response without the
// payload being processed again (XEP-0124 §14.3), rids are forwarded in
// order even when requests arrive out of order (§14.2), and a rid beyond the
// window terminates the session with item-not-found.
func TestBOSHRequestIDs(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	b := newBOSH(t, e.web(server.BOSHOptions{}))
	b.login("alice", "web")

	req, _ := b.body("", "<iq xmlns='jabber:client' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")
	_, first := b.post(req)
	_, again := b.post(req)
	if first != again || !strings.Contains(first, "v1") {
		t.Fatalf("retransmission:\n%s\n%s", first, again)
	}

	// rid+2 before rid+1: its payload waits for the gap to fill.
	rid1, rid2 := b.rid+1, b.rid+2
	later := make(chan boshResult, 1)
	go func() {
		el, raw := b.post(fmt.Sprintf("<body xmlns='%s' sid='%s' rid='%d'><iq xmlns='jabber:client' type='get' id='second'><ping xmlns='urn:xmpp:ping'/></iq></body>", nsHTTPBind, b.sid, rid2))
		later <- boshResult{el, raw}
	}()
	el, _ := b.post(fmt.Sprintf("<body xmlns='%s' sid='%s' rid='%d'><iq xmlns='jabber:client' type='get' id='first'><ping xmlns='urn:xmpp:ping'/></iq></body>", nsHTTPBind, b.sid, rid1))
	r := b.wait(later)
	b.rid = rid2
	// rid1 is answered first; the results may come in either answer, or
	// in the next one, but in order.
	answers := append(el.Elements(), r.Elements()...)
	if len(answers) < 2 {
		answers = append(answers, b.send("").Elements()...)
	}
	var ids []string
	for _, x := range answers {
		ids = append(ids, x.Get("id"))
	}
	if !strings.HasPrefix(strings.Join(ids, ","), "first,second") {
		t.Fatalf("payloads not forwarded in rid order: %v\n%s\n%s", ids, el, r)
	}

	if el, _ := b.post(fmt.Sprintf("<body xmlns='%s' sid='%s' rid='%d'/>", nsHTTPBind, b.sid, b.rid+5)); el.Get("type") != "terminate" || el.Get("condition") != "item-not-found" {
		t.Fatalf("rid beyond the window: %s", el)
	}
	if el := b.request("", ""); el.Get("condition") != "item-not-found" {
		t.Fatalf("session still alive: %s", el)
	}
}

// TestBOSHErrors: unknown sid → item-not-found, malformed body →
// bad-request, a stream error → remote-stream-error with the
// <stream:error/> in the body (XEP-0206 §5), CORS preflight, no plain GET.
func TestBOSHErrors(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	addr := e.web(server.BOSHOptions{})
	b := newBOSH(t, addr)
	if el, _ := b.post(fmt.Sprintf("<body xmlns='%s' sid='nosuchsession' rid='5'/>", nsHTTPBind)); el.Get("type") != "terminate" || el.Get("condition") != "item-not-found" {
		t.Fatalf("unknown sid: %s", el)
	}
	if el, _ := b.post("<body xmlns='" + nsHTTPBind + "' rid='5'><unclosed></body>"); el.Get("condition") != "bad-request" {
		t.Fatalf("malformed body: %s", el)
	}
	if el, _ := b.post("<body xmlns='urn:wrong' rid='5'/>"); el.Get("condition") != "bad-request" {
		t.Fatalf("wrong namespace: %s", el)
	}

	b.login("alice", "web")
	poll := b.async("")
	tcp := e.login("alice", "web") // the same resource: conflict (RFC 6120 §7.7.2.2)
	_ = tcp
	el := b.wait(poll)
	if el.Get("type") != "terminate" || el.Get("condition") != "remote-stream-error" {
		t.Fatalf("after conflict: %s", el)
	}
	if se := el.Child(nsStream, "error"); se == nil || se.Child(server.NSStreams, "conflict") == nil {
		t.Fatalf("no <stream:error><conflict/>: %s", el)
	}

	req, _ := http.NewRequest(http.MethodOptions, b.url, nil)
	req.Header.Set("Origin", "https://elsewhere.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	res, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	res, err = b.hc.Get(b.url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", res.StatusCode)
	}
}

// TestBOSHInactivity: a session without requests for 'inactivity' ends like
// a lost connection: a directed-presence recipient gets unavailable, and
// the sid is then unknown.
func TestBOSHInactivity(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	b := newBOSH(t, e.web(server.BOSHOptions{Inactivity: time.Second}))
	b.login("alice", "web")
	b.request("", "<presence xmlns='jabber:client'/>")
	bob := e.online("bob", "tcp")
	b.send(fmt.Sprintf("<presence xmlns='jabber:client' to='%s'/>", bob.JID))
	bob.Expect(xmpptest.IsPresenceFrom(b.JID, ""))
	// No more requests: the session must end by itself.
	bob.Expect(xmpptest.IsPresenceFrom(b.JID, "unavailable"))
	if el := b.request("", ""); el.Get("condition") != "item-not-found" {
		t.Fatalf("request after inactivity: %s", el)
	}
}

// TestBOSHShutdown: a held request is answered at shutdown with the
// system-shutdown stream error.
func TestBOSHShutdown(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	b := newBOSH(t, e.web(server.BOSHOptions{}))
	b.login("alice", "web")
	poll := b.async("")
	negotiating := newBOSH(t, b.url[len("https://"):len(b.url)-len(server.BOSHPath)])
	negotiating.create(60)
	held := negotiating.async("")
	e.srv.ShutdownWeb()
	el := b.wait(poll)
	if se := el.Child(nsStream, "error"); el.Get("condition") != "remote-stream-error" || se == nil || se.Child(server.NSStreams, "system-shutdown") == nil {
		t.Fatalf("held request at shutdown: %s", el)
	}
	if el := negotiating.wait(held); el.Get("type") != "terminate" || el.Get("condition") != "system-shutdown" {
		t.Fatalf("negotiating session at shutdown: %s", el)
	}
}

// TestBOSHLimits: a stanza over Limits.MaxStanzaBytes ends the stream with
// policy-violation like on TCP; a request body over twice that is refused
// with the binding condition policy-violation.
func TestBOSHLimits(t *testing.T) {
	e := newEnv(t, server.Limits{MaxStanzaBytes: 8 << 10})
	e.addUser("alice", "pw-alice")
	b := newBOSH(t, e.web(server.BOSHOptions{}))
	b.login("alice", "web")
	el := b.request("", fmt.Sprintf("<message xmlns='jabber:client' to='alice@%s'><body>%s</body></message>", domain, strings.Repeat("x", 10<<10)))
	if se := el.Child(nsStream, "error"); el.Get("condition") != "remote-stream-error" || se == nil || se.Child(server.NSStreams, "policy-violation") == nil {
		t.Fatalf("large stanza: %s", el)
	}

	b2 := newBOSH(t, b.url[len("https://"):len(b.url)-len(server.BOSHPath)])
	b2.login("alice", "web2")
	if el := b2.request("", strings.Repeat("<presence xmlns='jabber:client'/>", 1000)); el.Get("type") != "terminate" || el.Get("condition") != "policy-violation" {
		t.Fatalf("large body: %s", el)
	}
}

// TestBOSHAuthTimeout: a BOSH session that does not authenticate in time
// ends with the connection-timeout stream error, delivered to its held
// request.
func TestBOSHAuthTimeout(t *testing.T) {
	e := newEnv(t, server.Limits{AuthTimeout: time.Second})
	b := newBOSH(t, e.web(server.BOSHOptions{}))
	b.create(60)
	el := b.wait(b.async(""))
	if se := el.Child(nsStream, "error"); el.Get("condition") != "remote-stream-error" || se == nil || se.Child(server.NSStreams, "connection-timeout") == nil {
		t.Fatalf("unauthenticated session: %s", el)
	}
}
