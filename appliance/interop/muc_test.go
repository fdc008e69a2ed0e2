package interop_test

import "testing"

// TestSlixmppMUC: two slixmpp clients with the xep_0045 plugin create,
// configure and enter a room on groups.localhost and exchange groupchat
// messages (scripts/interop/muc.py).
func TestSlixmppMUC(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	s := startFresh(t)
	alice, alicePW := s.addUser(t, "alice")
	bob, bobPW := s.addUser(t, "bob")
	args := append(portArgs(s.c2s), s.tlsArgs(t)...)
	args = append(args, "--alice", alice, "--alice-password", alicePW, "--bob", bob, "--bob-password", bobPW,
		"--muc-domain", "groups."+domain)
	runScript(t, "muc.py", args...)
}
