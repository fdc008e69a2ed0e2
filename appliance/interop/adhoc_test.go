package interop_test

import (
	"strings"
	"testing"
)

// TestSlixmppAdhocInvite: slixmpp's XEP-0050 plugin lists the server's
// commands and runs urn:xmpp:invite#invite (XEP-0401); the invitation it
// returns is the server's (scripts/interop/adhoc_invite.py).
func TestSlixmppAdhocInvite(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	s := startFresh(t)
	alice, pw := s.addUser(t, "alice")
	args := append(portArgs(s.c2s), s.tlsArgs(t)...)
	out := runScript(t, "adhoc_invite.py", append(args, "--jid", alice, "--password", pw)...)
	_, token, ok := strings.Cut(out, "token: ")
	token, _, _ = strings.Cut(token, "\n")
	if !ok || token == "" {
		t.Fatalf("no token in the script's output")
	}
	if list := s.hearthCLI(t, "", "invite", "list", "--data", s.data); !strings.Contains(list, "/invite/"+token) {
		t.Fatalf("hearth invite list does not show the invitation %s:\n%s", token, list)
	}
}
