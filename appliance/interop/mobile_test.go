package interop_test

import (
	"testing"
)

// mobileParts are the parts of scripts/interop/mobile.py: XEP-0198 stream
// management with resumption after a dropped TCP connection, XEP-0280
// carbons, XEP-0313 MAM with XEP-0059 paging, and XEP-0163 PEP with +notify
// filtering through XEP-0115 caps. scripts/interop/prosody-mobile-check.sh
// runs the same script against Prosody 0.12, the reference.
var mobileParts = []string{"sm", "carbons", "mam", "pep"}

// TestSlixmppMobile: what phones need from the server. Each part runs on its
// own fresh server, so one feature's failure does not hide another's; when
// they all pass, the whole scenario runs once more on one server, where the
// parts share accounts and history (an SM resumption must not, say, archive a
// message twice).
func TestSlixmppMobile(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	requireHearth(t)
	parts := t.Run("Parts", func(t *testing.T) {
		for _, part := range mobileParts {
			t.Run(part, func(t *testing.T) {
				t.Parallel()
				runMobile(t, part)
			})
		}
	})
	t.Run("AllOnOneServer", func(t *testing.T) {
		if !parts {
			t.Skip("a part failed on its own server (see above)")
		}
		runMobile(t, "sm,carbons,mam,pep")
	})
}

// runMobile starts a fresh hearth with alice, bob and carol and runs
// mobile.py --parts parts against it.
func runMobile(t *testing.T, parts string) {
	t.Helper()
	s := startFresh(t)
	alice, alicePW := s.addUser(t, "alice")
	bob, bobPW := s.addUser(t, "bob")
	carol, carolPW := s.addUser(t, "carol")
	args := append(portArgs(s.c2s), s.tlsArgs(t)...)
	args = append(args,
		"--alice", alice, "--alice-password", alicePW,
		"--bob", bob, "--bob-password", bobPW,
		"--carol", carol, "--carol-password", carolPW,
		"--parts", parts)
	runScript(t, "mobile.py", args...)
}
