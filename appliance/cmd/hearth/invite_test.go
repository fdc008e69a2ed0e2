package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/store"
)

func TestInviteCommands(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "", "invite", "create", "--data", dir); code != 1 || !strings.Contains(stderr, "no domain yet") {
		t.Fatalf("create before the domain is known: %d %s", code, stderr)
	}
	if code, _, stderr := runCmd(t, "mum pass\n", "user", "add", "mum@example.test", "--data", dir); code != 0 {
		t.Fatalf("user add: %s", stderr)
	}
	code, out, stderr := runCmd(t, "", "invite", "create", "--data", dir, "--reusable", "--uses", "3", "--expires", "2d",
		"--role", "limited", "--circle", "Family", "--note", "cousins", "--inviter", "mum")
	if code != 0 {
		t.Fatalf("create: %d %s", code, stderr)
	}
	m := regexp.MustCompile(`Link: https://example\.test/invite/([A-Z2-7]{26})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no invitation link in %q", out)
	}
	token := m[1]
	if !strings.Contains(out, "XMPP: xmpp:example.test?register;preauth="+token+"\n") {
		t.Fatalf("no XEP-0401 URI in %q", out)
	}
	// The QR code: rows of Unicode half blocks, square-ish.
	var qrRows int
	for _, line := range strings.Split(out, "\n") {
		if strings.ContainsAny(line, "█▀▄") {
			qrRows++
		}
	}
	if qrRows < 10 {
		t.Fatalf("no QR code in %q", out)
	}
	if !strings.Contains(out, "group, 0 of 3 used, role limited") {
		t.Fatalf("summary missing in %q", out)
	}

	st, err := store.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := st.Invite(context.Background(), token)
	st.Close()
	if err != nil || inv.MaxUses != 3 || inv.Role != "limited" || inv.Inviter != "mum" || inv.Note != "cousins" ||
		len(inv.Circles) != 1 || inv.Circles[0] != "Family" || inv.Expires.Sub(inv.Created).Hours() != 48 {
		t.Fatalf("stored invitation %+v, %v", inv, err)
	}

	_, out, _ = runCmd(t, "", "invite", "list", "--data", dir, "--url", "https://home.example.test:5281")
	if !strings.Contains(out, "https://home.example.test:5281/invite/"+token+"\tvalid\t") {
		t.Fatalf("list: %q", out)
	}
	if code, _, _ := runCmd(t, "", "invite", "revoke", "https://example.test/invite/"+token, "--data", dir); code != 0 {
		t.Fatal("revoke by link failed")
	}
	_, out, _ = runCmd(t, "", "invite", "list", "--data", dir)
	if !strings.Contains(out, "\trevoked\t") {
		t.Fatalf("list after revoke: %q", out)
	}
	if code, _, _ := runCmd(t, "", "invite", "revoke", "NOSUCHTOKEN", "--data", dir); code != 1 {
		t.Fatal("revoking an unknown token succeeded")
	}
	for _, bad := range [][]string{
		{"--expires", "5w"}, {"--role", "root"}, {"--uses", "4"}, {"--inviter", "nobody"},
	} {
		args := append([]string{"invite", "create", "--data", dir, "--no-qr"}, bad...)
		if code, _, _ := runCmd(t, "", args...); code != 2 {
			t.Errorf("invite create %v: exit %d, want 2", bad, code)
		}
	}
	if _, out, _ := runCmd(t, "", "invite", "registration", "--data", dir); !strings.Contains(out, "closed") {
		t.Fatalf("registration default: %q", out)
	}
	if _, out, _ := runCmd(t, "", "invite", "registration", "open", "--data", dir); !strings.Contains(out, "is open") {
		t.Fatalf("registration open: %q", out)
	}
	if code, out, _ := runCmd(t, "", "invite", "create", "--data", dir, "--no-qr"); code != 0 || strings.Contains(out, "█") || !strings.Contains(out, "single use") {
		t.Fatalf("--no-qr: %d %q", code, out)
	}
}
