package interop_test

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	node         = "/usr/bin/node"
	chromiumPath = "/usr/bin/chromium"
	e2eTimeout   = 3 * time.Minute
)

// requireBrowser needs node, Debian's chromium and playwright-core
// installed under scripts/e2e (npm ci there; install-deps.sh does it).
func requireBrowser(t *testing.T) {
	t.Helper()
	for _, p := range []string{node, chromiumPath, filepath.Join(repoRoot, "scripts", "e2e", "node_modules", "playwright-core", "package.json")} {
		if _, err := os.Stat(p); err != nil {
			unavailable(t, "browser tests need %s: %v", p, err)
		}
	}
}

// artifactsDir is where screenshots go: $HEARTH_ARTIFACTS/NAME if set, else
// a directory under the system's temporary directory that outlives the test.
func artifactsDir(t *testing.T, name string) string {
	t.Helper()
	base := os.Getenv("HEARTH_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "hearth-artifacts")
	}
	dir := filepath.Join(base, name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// TestWebWizardInviteRegistration runs the first-boot wizard in Chromium on
// a fresh data directory (scripts/e2e/wizard.mjs): administrator account,
// the later steps, a first invitation; a CSRF-less POST is refused; the
// invitation's landing page registers a new account through the web form;
// the admin pages list it. Then slixmpp logs that account in, and finds the
// administrator (the inviter) in its roster (XEP-0379).
func TestWebWizardInviteRegistration(t *testing.T) {
	t.Parallel()
	requireBrowser(t)
	requireSlixmpp(t)
	requireHearth(t)
	p := freePorts(t, 6)
	s := &server{workDir: t.TempDir(), data: "data", c2s: p[0], c2sTLS: p[1]}
	startServer(t, s, "serve",
		"--data", s.dataDir(), "--domain", domain, "--listen", "127.0.0.1",
		"--c2s-port", strconv.Itoa(p[0]), "--c2s-tls-port", strconv.Itoa(p[1]),
		"--s2s-port", strconv.Itoa(p[2]), "--http-port", strconv.Itoa(p[3]),
		"--https-port", strconv.Itoa(p[4]), "--turn-port", strconv.Itoa(p[5]),
		// Hearth's own STUN server answers the reachability check: on
		// loopback the public address is the local one, a direct connection.
		"--stun-servers", "127.0.0.1:"+strconv.Itoa(p[5]),
	)
	s.waitListening(t, p[3])
	s.waitListening(t, p[4])

	adminPW, userPW := rand.Text(), rand.Text()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(repoRoot, "scripts", "e2e", "wizard.mjs"),
		"--http", "http://127.0.0.1:"+strconv.Itoa(p[3]),
		"--https", "https://localhost:"+strconv.Itoa(p[4]),
		"--artifacts", artifactsDir(t, "webui-wizard"),
		"--admin", "dad", "--admin-password", adminPW,
		"--user", "newbie", "--password", userPW)
	cmd.Dir = filepath.Join(repoRoot, "scripts", "e2e")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("wizard.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("wizard.mjs failed: %v", err)
	}
	if !strings.Contains(string(out), "\nPASS") || !strings.Contains(string(out), "REGISTERED newbie@localhost") {
		t.Fatal("wizard.mjs did not pass")
	}
	if !strings.Contains(string(out), "REACH Reachable: Hearth has a public address of its own") {
		t.Fatal("the reachability check did not find the direct connection")
	}
	if !regexp.MustCompile(`INVITE https://localhost:\d+/invite/[A-Z2-7]{26}`).Match(out) {
		t.Fatal("no invitation link printed")
	}

	args := append(portArgs(s.c2s), s.tlsArgs(t)...)
	got := runScript(t, "login.py", append(args, "--jid", "newbie@localhost", "--password", userPW)...)
	if !strings.Contains(got, "fetched the roster (1 items)") {
		t.Fatalf("the new account's roster should hold its inviter:\n%s", got)
	}
	runScript(t, "login.py", append(args, "--jid", "dad@localhost", "--password", adminPW)...)
}
