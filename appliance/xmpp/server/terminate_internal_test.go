package server

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// negotiatingSession returns a session in the state serveC2S gives it while
// the negotiation owns the connection (bound in the router or resumed, the
// writer not started), and the peer's end of its connection.
func negotiatingSession(t *testing.T) (*Session, net.Conn, net.Conn) {
	t.Helper()
	srv := &Server{limits: Limits{}.withDefaults(), log: slog.New(slog.DiscardHandler), now: time.Now}
	conn, peer := net.Pipe()
	t.Cleanup(func() { conn.Close(); peer.Close() })
	sess := &Session{srv: srv, log: srv.log, lc: newLimitConn(conn, 1<<16, 0), writing: true}
	return sess, conn, peer
}

// readAll reads what the session writes until it closes the connection.
func readAll(t *testing.T, peer net.Conn) string {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(peer)
	if err != nil {
		t.Fatalf("reading the session's output: %v (got %q)", err, b)
	}
	return string(b)
}

// TestTerminateWhileNegotiating: a session ended (shutdown, conflict) after
// its resource was bound but before the negotiation handed the connection
// to the writer sends the stream error, then the closing tag, once
// startWriting runs (RFC 6120 §4.9.1.1); not a bare closing tag.
func TestTerminateWhileNegotiating(t *testing.T) {
	sess, conn, peer := negotiatingSession(t)
	se := newStreamError(streamSystemShutdown, "server shutting down")
	sess.Terminate(se)
	sess.startWriting(conn)
	if got, want := readAll(t, peer), string(se.bytes()); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

// TestTerminateWhileResuming: ended between the takeover of a resumption
// (XEP-0198 §5: the connection and the resent stanzas are in place, the
// writer not started) and startWriting, the session writes the resent
// stanzas, the stream error and one closing tag.
func TestTerminateWhileResuming(t *testing.T) {
	sess, conn, peer := negotiatingSession(t)
	stanza := "<message xmlns='jabber:client'><body>resent</body></message>"
	sess.outMu.Lock()
	sess.conn = conn // as takeOver leaves it
	sess.sm = &smState{id: "x", outH: 1}
	sess.queue = [][]byte{[]byte(stanza)}
	sess.queued = len(stanza)
	sess.outMu.Unlock()
	se := newStreamError(streamSystemShutdown, "server shutting down")
	sess.Terminate(se)
	sess.startWriting(conn)
	if got, want := readAll(t, peer), stanza+string(se.bytes()); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

// TestSendWhileNegotiatingWithSM: a stanza routed to a session whose
// stream management was enabled inline (XEP-0386 Bind 2) before the
// negotiation handed over the connection is sent once the writer starts,
// not only counted as unacknowledged (which would make the client's next
// acknowledgement cover it: a lost message).
func TestSendWhileNegotiatingWithSM(t *testing.T) {
	sess, conn, peer := negotiatingSession(t)
	sess.sm = &smState{id: "x"}
	msg := xmlel.New(NSClient, "message", "to", "alice@example.test/web")
	msg.Add(xmlel.New(NSClient, "body").AddText("early"))
	if !sess.Send(msg) {
		t.Fatal("Send refused")
	}
	sess.startWriting(conn)
	want := string(msg.Bytes(NSClient))
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for len(got) < len(want) {
		n, err := peer.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("reading the session's output: %v (got %q)", err, got)
		}
	}
	if !strings.HasPrefix(string(got), want) {
		t.Fatalf("output %q, want %q first", got, want)
	}
}

// TestShutdownWebBoundDuringAbort: a web stream whose resource is bound
// after ShutdownWeb looked at the routed sessions (so it was aborted as
// still negotiating) still has its session ended, so that the reader's
// closed connection does not leave it alive or hibernated.
func TestShutdownWebBoundDuringAbort(t *testing.T) {
	srv := &Server{limits: Limits{}.withDefaults(), log: slog.New(slog.DiscardHandler), now: time.Now}
	srv.router.users = make(map[string]*userSessions)
	sess, _, _ := negotiatingSession(t)
	sess.srv = srv
	wc := newWebConn(newInbox(0), "127.0.0.1:1", "127.0.0.1:2", tls.ConnectionState{}, nil)
	sess.lc = newLimitConn(wc, 1<<16, 0)
	sess.username = "alice"
	sess.jid = jid.MustParse("alice@example.test/web")
	aborted := false
	abort := func(*streamError) {
		aborted = true
		srv.router.bind(sess) // bound meanwhile
		wc.Close()
	}
	if !srv.trackWeb(wc, abort) {
		t.Fatal("trackWeb refused")
	}
	defer srv.untrackWeb(wc)
	srv.ShutdownWeb()
	if !aborted {
		t.Fatal("negotiating stream not aborted")
	}
	sess.outMu.Lock()
	closing := sess.closing
	sess.outMu.Unlock()
	if !closing {
		t.Fatal("session bound during the abort was not terminated")
	}
}
