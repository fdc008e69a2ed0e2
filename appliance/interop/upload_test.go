package interop_test

import (
	"strconv"
	"testing"
)

// TestSlixmppUpload: slixmpp's XEP-0363 plugin finds upload.localhost through
// the server's disco#items, uploads a file over Hearth's HTTPS port (default
// upload URL https://localhost:HTTPS-PORT) and downloads the same bytes; a
// second PUT gets 409 and a slot over --upload-max-file-size is refused with
// <file-too-large/> (scripts/interop/upload.py).
func TestSlixmppUpload(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	requireHearth(t)
	const maxFile = 500000
	s := startFresh(t, "--upload-max-file-size", strconv.Itoa(maxFile))
	jid, pw := s.addUser(t, "alice")
	args := append(portArgs(s.c2s), s.tlsArgs(t)...)
	runScript(t, "upload.py", append(args, "--jid", jid, "--password", pw, "--max-file-size", strconv.Itoa(maxFile))...)
}
