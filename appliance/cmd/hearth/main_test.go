package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "s3cret\n", "user", "add", "Alice@example.test", "--data", dir); code != 0 {
		t.Fatalf("add: %d %s", code, stderr)
	}
	// The password is stored as SCRAM keys that verify, never in clear.
	st, err := store.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := st.Credentials(context.Background(), "alice", "SHA-256")
	st.Close()
	if err != nil || !auth.VerifyPassword(auth.Credential{Hash: k.Hash, Salt: k.Salt, Iterations: k.Iterations, StoredKey: k.StoredKey, ServerKey: k.ServerKey}, "s3cret") {
		t.Fatalf("stored key does not verify: %v", err)
	}
	if code, _, _ := runCmd(t, "x\n", "user", "add", "alice@example.test", "--data", dir); code != 1 {
		t.Fatal("duplicate add succeeded")
	}
	code, out, _ := runCmd(t, "", "user", "add", "--data", dir, "bob@example.test")
	if code != 0 || !strings.Contains(out, "bob@example.test password: ") {
		t.Fatalf("generated password: %d %q", code, out)
	}
	if code, _, stderr := runCmd(t, "", "user", "add", "eve@other.test", "--data", dir); code != 1 || !strings.Contains(stderr, "belongs to domain") {
		t.Fatalf("other domain: %d %s", code, stderr)
	}
	if code, _, _ := runCmd(t, "", "user", "add", "not a jid@@", "--data", dir); code != 2 {
		t.Fatal("bad JID accepted")
	}
	if code, _, _ := runCmd(t, "new\n", "user", "passwd", "alice@example.test", "--data", dir); code != 0 {
		t.Fatal("passwd failed")
	}
	if code, _, _ := runCmd(t, "new\n", "user", "passwd", "nobody@example.test", "--data", dir); code != 1 {
		t.Fatal("passwd of unknown user succeeded")
	}
	_, out, _ = runCmd(t, "", "user", "list", "--data", dir)
	if !strings.Contains(out, "alice\t") || !strings.Contains(out, "bob\t") {
		t.Fatalf("list: %q", out)
	}
	if code, _, _ := runCmd(t, "", "user", "del", "bob@example.test", "--data", dir); code != 0 {
		t.Fatal("del failed")
	}
	if code, _, _ := runCmd(t, "", "user", "del", "bob@example.test", "--data", dir); code != 1 {
		t.Fatal("second del succeeded")
	}
	if code, _, _ := runCmd(t, "", "frobnicate"); code != 2 {
		t.Fatal("unknown command accepted")
	}
}
