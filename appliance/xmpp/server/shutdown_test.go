package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// TestShutdownBindAfterScan: a TCP client that binds its resource after
// Server.Shutdown ended the routed sessions gets its bind result and then
// stream error system-shutdown (RFC 6120 §4.9.3.19), like the sessions
// bound before; it does not live on while Shutdown waits for it.
func TestShutdownBindAfterScan(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	early := e.online("alice", "early")
	c := xmpptest.Dial(t, e.addr, domain)
	c.OpenStream()
	c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: domain})
	if el := c.Auth("alice", "pw-alice"); el.Name.Local != "success" {
		t.Fatalf("auth: %s", el)
	}
	c.OpenStream()

	// Shutdown begins (and returns at once: its context is already done)
	// while c is authenticated but not yet bound.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.srv.Shutdown(ctx)
	if cond := early.WaitClosed(); cond != "system-shutdown" {
		t.Fatalf("session bound before shutdown ended with %q", cond)
	}

	// Its bind request is either read before Shutdown ended the
	// negotiation (the bind result, then the stream error) or not (the
	// stream error at once): system-shutdown either way.
	c.Send("<iq type='set' id='late'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>late</resource></bind></iq>")
	if cond := c.WaitClosed(); cond != "system-shutdown" {
		t.Fatalf("session bound during shutdown ended with %q, want system-shutdown", cond)
	}
}

// TestShutdownEndsNegotiations: TCP streams that never authenticate (a
// stream header, or only a TCP connection) do not hold Shutdown until the
// authentication timeout: they get stream error system-shutdown at once
// (RFC 6120 §4.9.3.19), and Shutdown returns without its context ending.
func TestShutdownEndsNegotiations(t *testing.T) {
	e := newEnv(t, server.Limits{AuthTimeout: 10 * time.Minute})
	header := xmpptest.Dial(t, e.addr, domain)
	header.OpenStream()
	silent, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v: it waited for the negotiating streams", err)
	}
	if cond := header.WaitClosed(); cond != "system-shutdown" {
		t.Fatalf("negotiating stream ended with %q, want system-shutdown", cond)
	}
	// Closed (EOF, not the read deadline): with system-shutdown if its
	// negotiation had begun, silently if Shutdown came first.
	silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(silent)
	if err != nil || len(b) > 0 && !strings.Contains(string(b), "system-shutdown") {
		t.Fatalf("silent connection got %q, %v", b, err)
	}
}
