package interop_test

import (
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.c2s)) }

// restartSame starts a new hearth process on the same data directory and ports.
func restartSame(t *testing.T, old *server) *server {
	t.Helper()
	s := &server{workDir: old.workDir, data: old.data, c2s: old.c2s, c2sTLS: old.c2sTLS}
	startServer(t, s, "serve", "--data", s.dataDir(), "--domain", domain, "--listen", "127.0.0.1",
		"--c2s-port", strconv.Itoa(s.c2s), "--c2s-tls-port", strconv.Itoa(s.c2sTLS))
	return s
}

// Accounts, roster, offline messages, vCards and private XML survive kill -9
// (SQLite WAL with synchronous=FULL; every write is committed before the
// stanza that caused it is answered).
func TestKill9KeepsData(t *testing.T) {
	s := startFresh(t)
	_, apw := s.addUser(t, "alice")
	_, bpw := s.addUser(t, "bob")
	a := xmpptest.Dial(t, s.addr(), domain)
	a.Login("alice", apw, "a")
	if r := a.IQ("set", "", "<query xmlns='jabber:iq:roster'><item jid='bob@"+domain+"' name='Bob'><group>Family</group></item></query>"); r.Get("type") != "result" {
		t.Fatalf("roster set: %s", r)
	}
	if r := a.IQ("set", "", "<vCard xmlns='vcard-temp'><FN>Alice A.</FN></vCard>"); r.Get("type") != "result" {
		t.Fatalf("vcard set: %s", r)
	}
	if r := a.IQ("set", "", "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'>dark</prefs></query>"); r.Get("type") != "result" {
		t.Fatalf("private set: %s", r)
	}
	a.Send("<presence/>")
	a.Send("<message to='bob@%s' type='chat' id='off1'><body>kept across kill -9</body></message>", domain)
	// The reader handles stanzas in order: once this answer arrives the
	// message above has been stored.
	a.IQ("get", domain, "<ping xmlns='urn:xmpp:ping'/>")

	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done

	s2 := restartSame(t, s)
	b := xmpptest.Dial(t, s2.addr(), domain)
	b.Login("bob", bpw, "b")
	b.Send("<presence/>")
	m := b.Expect(xmpptest.IsMessage("kept across kill -9"))
	if m.Child("urn:xmpp:delay", "delay") == nil {
		t.Fatalf("offline message without delay: %s", m)
	}
	a2 := xmpptest.Dial(t, s2.addr(), domain)
	a2.Login("alice", apw, "a2")
	r := a2.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	item := r.FirstElement().Child("", "item")
	if item == nil || item.Get("name") != "Bob" || item.ChildText("", "group") != "Family" {
		t.Fatalf("roster after kill -9: %s", r)
	}
	if r := a2.IQ("get", "", "<vCard xmlns='vcard-temp'/>"); !strings.Contains(r.String(), "Alice A.") {
		t.Fatalf("vcard after kill -9: %s", r)
	}
	if r := a2.IQ("get", "", "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>"); !strings.Contains(r.String(), "dark") {
		t.Fatalf("private XML after kill -9: %s", r)
	}
}

// SIGTERM ends every stream with system-shutdown and the process exits 0.
func TestSIGTERMShutdown(t *testing.T) {
	s := startFresh(t)
	_, apw := s.addUser(t, "alice")
	a := xmpptest.Dial(t, s.addr(), domain)
	a.Login("alice", apw, "a")
	a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if cond := a.WaitClosed(); cond != "system-shutdown" {
		t.Fatalf("stream ended with %q, want system-shutdown", cond)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("hearth did not exit after SIGTERM")
	}
	if s.waitErr != nil {
		t.Fatalf("exit status: %v", s.waitErr)
	}
}

// The user commands work against the database of a running server, and a
// password change takes effect for the next login.
func TestUserCommandsWhileRunning(t *testing.T) {
	s := startFresh(t)
	jid, pw := s.addUser(t, "carol")
	c := xmpptest.Dial(t, s.addr(), domain)
	c.Login("carol", pw, "c")
	s.hearthCLI(t, "changed-pw\n", "user", "passwd", jid, "--data", s.data)
	out := s.hearthCLI(t, "", "user", "list", "--data", s.data)
	if !strings.Contains(out, "carol\t") {
		t.Fatalf("list: %q", out)
	}
	c2 := xmpptest.Dial(t, s.addr(), domain)
	c2.OpenStream()
	c2.StartTLS(tlsConfigInsecure())
	if el := c2.Auth("carol", pw); el.Name.Local != "failure" {
		t.Fatalf("old password still works: %s", el)
	}
	c3 := xmpptest.Dial(t, s.addr(), domain)
	c3.Login("carol", "changed-pw", "c3")
	s.hearthCLI(t, "", "user", "del", jid, "--data", s.data)
	c4 := xmpptest.Dial(t, s.addr(), domain)
	c4.OpenStream()
	c4.StartTLS(tlsConfigInsecure())
	if el := c4.Auth("carol", "changed-pw"); el.Name.Local != "failure" {
		t.Fatalf("deleted account logs in: %s", el)
	}
}

func tlsConfigInsecure() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
