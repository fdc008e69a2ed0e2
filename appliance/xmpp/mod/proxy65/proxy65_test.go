package proxy65

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

const proxyJID = "proxy." + modtest.Domain

type env struct {
	*modtest.Env
	p                 *Proxy
	alice, bob, carol *modtest.Client
}

func setup(t *testing.T, cfg Config) *env {
	t.Helper()
	e := modtest.New(t)
	disco.Register(e.S)
	p, err := Register(e.S, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for _, u := range []string{"alice", "bob", "carol"} {
		e.AddUser(u, "pw-"+u)
	}
	return &env{Env: e, p: p,
		alice: e.Connect("alice", "pw-alice"), bob: e.Connect("bob", "pw-bob"), carol: e.Connect("carol", "pw-carol")}
}

func (e *env) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.p.Port())) }

// socks opens a SOCKS5 connection for hash (XEP-0065 §5.3.2) and returns it
// with the reply code.
func socks(t *testing.T, addr, hash string) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		t.Fatalf("method selection: %v %v", m, err)
	}
	req := append([]byte{5, 1, 0, 3, byte(len(hash))}, hash...)
	if _, err := c.Write(append(req, 0, 0)); err != nil {
		t.Fatal(err)
	}
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	if head[1] == 0 {
		rest := make([]byte, 1+len(hash)+2)
		if _, err := io.ReadFull(c, rest); err != nil {
			t.Fatal(err)
		}
		if head[3] != 3 || int(rest[0]) != len(hash) || string(rest[1:1+len(hash)]) != hash {
			t.Fatalf("reply does not echo DST.ADDR: %v %q", head, rest)
		}
	}
	return c, head[1]
}

func connected(t *testing.T, addr, hash string) net.Conn {
	t.Helper()
	c, rep := socks(t, addr, hash)
	if rep != 0 {
		t.Fatalf("SOCKS5 reply %d, want success", rep)
	}
	return c
}

func activate(c *modtest.Client, sid, target string) *xmlel.Element {
	return c.Request("set", proxyJID, `<query xmlns='http://jabber.org/protocol/bytestreams' sid='`+sid+`'><activate>`+target+`</activate></query>`)
}

func hash(sid string, initiator, target *modtest.Client) string {
	return Hash(sid, initiator.JID, target.JID)
}

// closedSoon reports whether c is closed by the proxy (EOF or reset) within
// 10 seconds, discarding what it reads; it returns the bytes read.
func readToClose(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 10s (read %d bytes)", len(b))
	}
	return b
}

func TestDisco(t *testing.T) {
	e := setup(t, Config{})
	items := e.alice.Request("get", modtest.Domain, `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	if q := items.Child(disco.NSItems, "query"); q == nil || len(q.Elements()) != 1 || q.Elements()[0].Get("jid") != proxyJID {
		t.Fatalf("server disco#items: %s", items)
	}
	info := e.alice.Request("get", proxyJID, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	q := info.Child(disco.NSInfo, "query")
	if info.Get("type") != "result" || info.Get("from") != proxyJID || q == nil {
		t.Fatalf("proxy disco#info: %s", info)
	}
	id := q.Child(disco.NSInfo, "identity")
	if id == nil || id.Get("category") != "proxy" || id.Get("type") != "bytestreams" {
		t.Fatalf("identity: %s", info)
	}
	found := false
	for _, f := range q.ChildrenNamed(disco.NSInfo, "feature") {
		found = found || f.Get("var") == NS
	}
	if !found {
		t.Fatalf("no %s feature: %s", NS, info)
	}
	if r := e.alice.Request("get", proxyJID, `<query xmlns='http://jabber.org/protocol/disco#items'/>`); r.Get("type") != "result" {
		t.Fatalf("proxy disco#items: %s", r)
	}
	modtest.WantIQError(t, e.alice.Request("get", proxyJID, `<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>`), "item-not-found")
	modtest.WantIQError(t, e.alice.Request("get", proxyJID, `<query xmlns='jabber:iq:version'/>`), "service-unavailable")
	modtest.WantIQError(t, e.alice.Request("get", "someone@"+proxyJID, `<query xmlns='http://jabber.org/protocol/bytestreams'/>`), "service-unavailable")
}

func TestStreamhost(t *testing.T) {
	e := setup(t, Config{})
	r := e.alice.Request("get", proxyJID, `<query xmlns='http://jabber.org/protocol/bytestreams'/>`)
	sh := r.Child(NS, "query")
	if sh != nil {
		sh = sh.Child(NS, "streamhost")
	}
	if sh == nil || sh.Get("jid") != proxyJID || sh.Get("host") != "127.0.0.1" || sh.Get("port") != strconv.Itoa(e.p.Port()) {
		t.Fatalf("streamhost: %s", r)
	}
	// A configured public host is announced instead.
	e2 := modtest.New(t)
	p, err := Register(e2.S, Config{Domain: "files." + modtest.Domain, Host: "hearth.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res, err := p.answer(context.Background(), xmlel.New(server.NSClient, "iq", "id", "1").Add(xmlel.New(NS, "query")), "get",
		jid.MustParse("alice@"+modtest.Domain+"/r"), p.Domain())
	if err != nil || res.Child(NS, "streamhost").Get("host") != "hearth.example.net" || p.Domain().String() != "files."+modtest.Domain {
		t.Fatalf("configured host: %v %v", res, err)
	}
}

func TestMediatedBytestream(t *testing.T) {
	e := setup(t, Config{})
	sid := "sid-1"
	h := hash(sid, e.alice, e.bob)
	// The target connects first, then the initiator (XEP-0065 §2.2).
	target := connected(t, e.addr(), h)

	// Only one party connected: not-allowed.
	modtest.WantIQError(t, activate(e.alice, sid, e.bob.JID.String()), "not-allowed")

	initiator := connected(t, e.addr(), h)
	// A third connection with the same hash is refused.
	if _, rep := socks(t, e.addr(), h); rep == 0 {
		t.Fatal("third connection for one bytestream accepted")
	}

	// Unknown sid; activation by a third party or by the target (their
	// hashes differ): item-not-found.
	modtest.WantIQError(t, activate(e.alice, "other-sid", e.bob.JID.String()), "item-not-found")
	modtest.WantIQError(t, activate(e.carol, sid, e.bob.JID.String()), "item-not-found")
	modtest.WantIQError(t, activate(e.bob, sid, e.alice.JID.String()), "item-not-found")
	// Nothing flows before activation.
	initiator.Write([]byte("early"))
	target.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := target.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Fatalf("bytes relayed before activation: %d %v", n, err)
	}
	target.SetReadDeadline(time.Time{})

	if r := activate(e.alice, sid, e.bob.JID.String()); r.Get("type") != "result" || r.Get("from") != proxyJID {
		t.Fatalf("activation: %s", r)
	}
	modtest.WantIQError(t, activate(e.alice, sid, e.bob.JID.String()), "not-allowed")

	// Both ways, with the early bytes first.
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() { initiator.Write(payload) }()
	got := make([]byte, len("early")+len(payload))
	target.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(target, got); err != nil {
		t.Fatal(err)
	}
	if string(got[:5]) != "early" || !bytes.Equal(got[5:], payload) {
		t.Fatal("relayed bytes differ")
	}
	if _, err := target.Write([]byte("thanks")); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 6)
	initiator.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(initiator, back); err != nil || string(back) != "thanks" {
		t.Fatalf("target to initiator: %q %v", back, err)
	}
	// The initiator finishes: the target sees EOF, then its own close ends
	// the bytestream.
	initiator.(*net.TCPConn).CloseWrite()
	if rest := readToClose(t, target); len(rest) != 0 {
		t.Fatalf("extra bytes %q", rest)
	}
	target.Close()
	readToClose(t, initiator)
	modtest.Eventually(t, "the bytestream to be forgotten", func() bool {
		e.p.mu.Lock()
		defer e.p.mu.Unlock()
		return len(e.p.streams) == 0 && len(e.p.conns) == 0
	})
	// The same sid can be used again afterwards.
	connected(t, e.addr(), h)
}

func TestByteLimit(t *testing.T) {
	e := setup(t, Config{MaxBytes: 1000})
	h := hash("s", e.alice, e.bob)
	a, b := connected(t, e.addr(), h), connected(t, e.addr(), h)
	if r := activate(e.alice, "s", e.bob.JID.String()); r.Get("type") != "result" {
		t.Fatal(r)
	}
	if _, err := a.Write(make([]byte, 600)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 600)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	// 600 + 600 > 1000: only 400 more arrive, then the bytestream ends.
	b.Write(make([]byte, 600))
	if got := readToClose(t, a); len(got) != 400 {
		t.Fatalf("after the limit the initiator got %d bytes, want 400", len(got))
	}
	readToClose(t, b)
}

func TestIdleTimeout(t *testing.T) {
	e := setup(t, Config{IdleTimeout: 300 * time.Millisecond})
	h := hash("s", e.alice, e.bob)
	a, b := connected(t, e.addr(), h), connected(t, e.addr(), h)
	if r := activate(e.alice, "s", e.bob.JID.String()); r.Get("type") != "result" {
		t.Fatal(r)
	}
	readToClose(t, a)
	readToClose(t, b)
}

func TestPendingTimeout(t *testing.T) {
	e := setup(t, Config{PendingTimeout: 300 * time.Millisecond})
	c := connected(t, e.addr(), hash("s", e.alice, e.bob))
	readToClose(t, c)
	modtest.Eventually(t, "the pending bytestream to be forgotten", func() bool {
		e.p.mu.Lock()
		defer e.p.mu.Unlock()
		return len(e.p.streams) == 0
	})
}

func TestSOCKSErrors(t *testing.T) {
	e := setup(t, Config{})
	exchange := func(hello []byte, req []byte) []byte {
		c, err := net.Dial("tcp", e.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(hello)
		if req != nil {
			var m [2]byte
			io.ReadFull(c, m[:])
			c.Write(req)
		}
		return readToClose(t, c)
	}
	h := hash("s", e.alice, e.bob)
	// Username/password authentication only: no acceptable method.
	if got := exchange([]byte{5, 1, 2}, nil); !bytes.Equal(got, []byte{5, 0xff}) {
		t.Errorf("no acceptable method: %v", got)
	}
	// BIND instead of CONNECT.
	if got := exchange([]byte{5, 1, 0}, append(append([]byte{5, 2, 0, 3, 40}, h...), 0, 0)); len(got) < 2 || got[1] != repCmdUnsupp {
		t.Errorf("BIND: %v", got)
	}
	// An IPv4 address instead of the hash.
	if got := exchange([]byte{5, 1, 0}, []byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 80}); len(got) < 2 || got[1] != repAtypUnsupp {
		t.Errorf("IPv4 DST.ADDR: %v", got)
	}
	// Not a SHA-1 hash.
	if got := exchange([]byte{5, 1, 0}, append([]byte{5, 1, 0, 3, 7}, "example"+"\x00\x00"...)); len(got) < 2 || got[1] != repFailure {
		t.Errorf("bad hash: %v", got)
	}
	// SOCKS4.
	if got := exchange([]byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil); len(got) != 0 {
		t.Errorf("SOCKS4: %v", got)
	}
}

func TestConnectionLimit(t *testing.T) {
	e := setup(t, Config{MaxConnsPerIP: 2})
	connected(t, e.addr(), hash("a", e.alice, e.bob))
	connected(t, e.addr(), hash("b", e.alice, e.bob))
	c, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{5, 1, 0})
	if got := readToClose(t, c); len(got) != 0 {
		t.Fatalf("third connection answered %v", got)
	}
}

func TestBadRequests(t *testing.T) {
	e := setup(t, Config{})
	for p, want := range map[string]string{
		`<query xmlns='http://jabber.org/protocol/bytestreams'><activate>bob@example.org/r</activate></query>`:                       "bad-request",
		`<query xmlns='http://jabber.org/protocol/bytestreams' sid='s'/>`:                                                            "bad-request",
		`<query xmlns='http://jabber.org/protocol/bytestreams' sid='s'><activate>@@</activate></query>`:                              "jid-malformed",
		`<query xmlns='http://jabber.org/protocol/bytestreams' sid='s'><activate>a@b/c</activate><activate>d@e/f</activate></query>`: "bad-request",
	} {
		modtest.WantIQError(t, e.alice.Request("set", proxyJID, p), want)
	}
	// A message to the proxy bounces.
	e.alice.Send(xmlel.MustParse(`<message xmlns='jabber:client' to='` + proxyJID + `' id='m1'><body>hi</body></message>`))
	for i := 0; i < 10; i++ {
		m := e.alice.Next()
		if m.Name.Local == "message" && m.Get("id") == "m1" {
			if modtest.ErrorCondition(m) != "service-unavailable" {
				t.Fatalf("message answer: %s", m)
			}
			return
		}
	}
	t.Fatal("no error for the message")
}

func TestOnlyLocalAccounts(t *testing.T) {
	e := modtest.New(t)
	p, err := Register(e.S, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, typ := range []string{"get", "set"} {
		q := xmlel.New(NS, "query", "sid", "s").Add(xmlel.New(NS, "activate").AddText("bob@" + modtest.Domain + "/r"))
		if typ == "get" {
			q = xmlel.New(NS, "query")
		}
		_, err := p.answer(context.Background(), xmlel.New(server.NSClient, "iq", "id", "1").Add(q), typ,
			jid.MustParse("mallory@elsewhere.example/x"), p.Domain())
		modtest.WantCondition(t, err, "forbidden")
	}
	if _, err := Register(e.S, Config{}); err == nil {
		t.Fatal("a second proxy on the same domain was registered")
	}
}

func TestCloseEndsEverything(t *testing.T) {
	e := setup(t, Config{})
	h := hash("s", e.alice, e.bob)
	a, b := connected(t, e.addr(), h), connected(t, e.addr(), h)
	if r := activate(e.alice, "s", e.bob.JID.String()); r.Get("type") != "result" {
		t.Fatal(r)
	}
	pending := connected(t, e.addr(), hash("t", e.alice, e.bob))
	done := make(chan struct{})
	go func() { e.p.Close(); close(done) }()
	for _, c := range []net.Conn{a, b, pending} {
		readToClose(t, c)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if c, err := net.Dial("tcp", e.addr()); err == nil {
		c.Close()
		t.Fatal("still accepting after Close")
	}
}
