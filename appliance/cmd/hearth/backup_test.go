package main

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBackupAndExportCommands(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "alice pass\n", "user", "add", "alice@example.test", "--data", dir); code != 0 {
		t.Fatalf("user add: %s", stderr)
	}
	os.MkdirAll(filepath.Join(dir, "uploads", "files"), 0o700)
	os.WriteFile(filepath.Join(dir, "uploads", "files", "x"), []byte("x"), 0o600)
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	if code, stdout, stderr := runCmd(t, "", "backup", out, "--data", dir, "--no-uploads"); code != 0 || !strings.Contains(stdout, "backup written to") {
		t.Fatalf("backup: %d %s %s", code, stdout, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode %v", fi.Mode())
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if len(names) == 0 || names[0] != "hearth.db" || strings.Contains(strings.Join(names, " "), "uploads/") {
		t.Fatalf("entries %v", names)
	}
	if code, _, _ := runCmd(t, "", "backup", "--data", dir); code != 2 {
		t.Fatal("backup without a file accepted")
	}

	code, stdout, stderr := runCmd(t, "", "export", "alice@example.test", "--data", dir)
	if code != 0 || !strings.Contains(stdout, `<user name="alice">`) || !strings.Contains(stdout, `<server-data xmlns="urn:xmpp:pie:0">`) {
		t.Fatalf("export: %d %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runCmd(t, "", "export", "bob@example.test", "--data", dir); code != 1 || !strings.Contains(stderr, "no such account") {
		t.Fatalf("export of nobody: %d %s", code, stderr)
	}
	if code, _, stderr := runCmd(t, "", "export", "alice@other.test", "--data", dir); code != 1 || !strings.Contains(stderr, "belongs to domain") {
		t.Fatalf("export for another domain: %d %s", code, stderr)
	}
}
