package server_test

import (
	"context"
	"crypto/tls"
	"testing"

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

	c.Bind("late")
	if cond := c.WaitClosed(); cond != "system-shutdown" {
		t.Fatalf("session bound during shutdown ended with %q, want system-shutdown", cond)
	}
}
