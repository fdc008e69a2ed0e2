package lean_test

// Tests against a real Hearth server on a loopback STARTTLS listener.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/muc"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean/leanbench"
)

const (
	testDomain = "lean.test"
	testMUC    = "groups.lean.test"
	testPass   = "pw-lean"
)

// startHearth runs a server with the MUC service and the accounts users
// (password testPass); it returns the listener's address.
func startHearth(t *testing.T, users ...string) string {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cert, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(dir, "tls"), testDomain)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Domain: testDomain, Store: st, Certificate: cert,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := muc.Register(srv, muc.Options{Domain: testMUC}); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := account.Create(context.Background(), st, u, testPass); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := srv.ListenC2S(ctx, "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
	})
	return a.String()
}

func dialer(addr, resource string) *lean.Dialer {
	return &lean.Dialer{Addr: addr, Domain: testDomain, Resource: resource,
		TLS: &tls.Config{InsecureSkipVerify: true, ServerName: testDomain}}
}

func login(t *testing.T, d *lean.Dialer, mech lean.Mechanism, user, password string) (*lean.Conn, error) {
	t.Helper()
	cred, err := lean.NewCredentials(mech, user, password)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return d.Login(ctx, deadline, cred)
}

// waitCount waits (bounded) until r counted want stanzas.
func waitCount(t *testing.T, r *lean.Reader, want int64) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for r.Count() < want {
		select {
		case <-r.Notify():
		case <-timeout:
			t.Fatalf("counted %d of %d", r.Count(), want)
		}
	}
}

// TestLoginAndChat logs in with SCRAM-SHA-1 and SCRAM-SHA-256 (server
// signature checked), rejects a wrong password, and counts chat messages
// sent as pre-built bytes.
func TestLoginAndChat(t *testing.T) {
	addr := startHearth(t, "alice", "bob")
	if _, err := login(t, dialer(addr, "x"), lean.SCRAMSHA1, "alice", "wrong"); err == nil ||
		!strings.Contains(err.Error(), "not-authorized") {
		t.Fatalf("wrong password: %v, want a not-authorized SASL failure", err)
	}
	a, err := login(t, dialer(addr, "phone"), lean.SCRAMSHA1, "alice", testPass)
	if err != nil {
		t.Fatal(err)
	}
	b, err := login(t, dialer(addr, ""), lean.SCRAMSHA256, "bob", testPass)
	if err != nil {
		t.Fatal(err)
	}
	if a.JID() != "alice@"+testDomain+"/phone" || lean.BareJID(b.JID()) != "bob@"+testDomain {
		t.Fatalf("bound %q and %q", a.JID(), b.JID())
	}
	for _, c := range []*lean.Conn{a, b} {
		if err := c.Available(); err != nil {
			t.Fatal(err)
		}
		c.NetConn().SetDeadline(time.Now().Add(30 * time.Second))
	}
	r := b.StartReader(lean.CountChat, "")
	msg := lean.MessageWithReceipt(lean.BareJID(b.JID()), "chat", "m1", "hi & <bye>")
	if err := a.Write(append(append(msg, lean.Message(b.JID(), "chat", "2")...), lean.Message(b.JID(), "groupchat", "no")...)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, r, 2)
	b.CloseStream()
	select {
	case <-r.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("reader did not end after the stream closed")
	}
	if r.Count() != 2 {
		t.Fatalf("counted %d, want 2 (the groupchat-typed one is not chat)", r.Count())
	}
	a.CloseStream()
	a.WaitClosed(time.Now().Add(10 * time.Second))
}

// TestRoom creates a room (locked, status 201), opens it with the owner
// form, lets a second occupant join and counts groupchat messages and the
// sender's own reflections.
func TestRoom(t *testing.T) {
	addr := startHearth(t, "owner", "guest")
	room := "den@" + testMUC
	var conns []*lean.Conn
	for _, u := range []string{"owner", "guest"} {
		c, err := login(t, dialer(addr, "r"), lean.SCRAMSHA256, u, testPass)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Available(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	created, owner, err := conns[0].JoinRoom(room, "Owner")
	if err != nil || !created || !owner {
		t.Fatalf("first join: created %v owner %v err %v", created, owner, err)
	}
	if err := conns[0].ConfigureRoom(room, true); err != nil {
		t.Fatal(err)
	}
	if created, owner, err := conns[1].JoinRoom(room, "guest"); err != nil || created || owner {
		t.Fatalf("second join: created %v owner %v err %v", created, owner, err)
	}
	r0 := conns[0].StartReader(lean.CountGroupchat, "/owner") // nick case folded
	r1 := conns[1].StartReader(lean.CountGroupchat, "/owner")
	msg := lean.Message(room, "groupchat", "hello")
	if err := conns[0].Write(append(append([]byte{}, msg...), msg...)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, r0, 2)
	waitCount(t, r1, 2)
	if r0.Own() != 2 || r1.Own() != 2 {
		t.Fatalf("own reflections %d and %d, want 2", r0.Own(), r1.Own())
	}
}

// TestBenchProtocol runs leanbench's command loop in-process: logins,
// a chat flood counted by the receiver, wait, and a bad command.
func TestBenchProtocol(t *testing.T) {
	addr := startHearth(t, "alice", "bob")
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- leanbench.Serve(inR, outW, addr, testDomain); outW.Close() }()
	lines := make(chan string, 4)
	go func() {
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := outR.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := strings.IndexByte(string(buf), '\n')
				if i < 0 {
					break
				}
				lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	do := func(cmd string) string {
		t.Helper()
		if _, err := fmt.Fprintln(inW, cmd); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-lines:
			return l
		case <-time.After(60 * time.Second):
			t.Fatalf("no answer to %q", cmd)
		}
		return ""
	}
	if got := do("online alice " + testPass + " phone"); got != "bench: ok 0" {
		t.Fatalf("first online: %q", got)
	}
	if got := do("online bob " + testPass + " laptop"); got != "bench: ok 1" {
		t.Fatalf("second online: %q", got)
	}
	for _, c := range []struct{ cmd, want string }{
		{"raw 1 <message to='alice@" + testDomain + "' type='chat'><body>w</body></message>", "bench: ok"},
		{"wait 0 body", "bench: ok"},
		{"flood 0 bob@" + testDomain + " chat 50 10 1", "bench: ok"},
		{"wait 1 presence", "bench: err wait on a counting session"},
		{"flood 0 bob@" + testDomain + " groupchat 1 1 1", "bench: err flood: the session already counts"},
		{"logins 3 alice " + testPass, "bench: ok"},
		{"bogus", "bench: err bad command"},
		{"online bob wrong x", "bench: err SASL failure: not-authorized"},
		{"closeall", "bench: ok"},
	} {
		if got := do(c.cmd); !strings.HasPrefix(got, c.want) {
			t.Fatalf("%q: %q, want %q", c.cmd, got, c.want)
		}
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return at the end of its input")
	}
}
