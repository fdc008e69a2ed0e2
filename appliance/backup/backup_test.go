package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/store"
)

// unpack reads a backup into a map of name to content.
func unpack(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = data
	}
}

func names(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, DBName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := account.Create(ctx, st, "alice", "alice password"); err != nil {
		t.Fatal(err)
	}
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tls/cert.pem", "CERT")
	write("tls/key.pem", "KEY")
	write("uploads/files/abc", "a cat picture")
	write("uploads/tmp/partial", "half a file")
	if _, err := os.Stat(filepath.Join(dir, DBName+"-wal")); err != nil {
		t.Fatalf("the test wants a WAL file: %v", err)
	}

	var buf bytes.Buffer
	if err := Write(ctx, &buf, st, dir, Options{Uploads: true}); err != nil {
		t.Fatal(err)
	}
	got := unpack(t, buf.Bytes())
	if want := "hearth.db tls/cert.pem tls/key.pem uploads/files/abc"; strings.Join(names(got), " ") != want {
		t.Fatalf("entries %v, want %s", names(got), want)
	}
	if string(got["uploads/files/abc"]) != "a cat picture" || string(got["tls/key.pem"]) != "KEY" {
		t.Fatal("file contents differ")
	}
	// The snapshot is a database of its own with the account in it.
	restored := filepath.Join(t.TempDir(), DBName)
	if err := os.WriteFile(restored, got[DBName], 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := store.Open(restored)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.AccountExists(ctx, "alice"); !ok {
		t.Fatal("the snapshot lacks alice")
	}
	r.Close()

	buf.Reset()
	if err := Write(ctx, &buf, st, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := names(unpack(t, buf.Bytes())); strings.Join(got, " ") != "hearth.db tls/cert.pem tls/key.pem" {
		t.Fatalf("without uploads: %v", got)
	}
	// Nothing is left behind in the data directory; a killed backup's
	// snapshot older than a day goes with the next backup.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Fatalf("temporary %s left", e.Name())
		}
	}
	stale, fresh := filepath.Join(dir, tempPrefix+"killed"), filepath.Join(dir, tempPrefix+"running")
	os.MkdirAll(stale, 0o700)
	os.MkdirAll(fresh, 0o700)
	old := time.Now().Add(-2 * staleAge)
	os.Chtimes(stale, old, old)
	buf.Reset()
	if err := Write(ctx, &buf, st, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("the stale snapshot directory stayed")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("a recent snapshot directory (a backup running) was removed")
	}
	if strings.Contains(strings.Join(names(unpack(t, buf.Bytes())), " "), tempPrefix) {
		t.Fatal("a snapshot directory went into the backup")
	}
}
