package interop_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/ddns"
	"github.com/hearthxmpp/hearth/ddns/ddnstest"
	"github.com/libdns/libdns"
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
// a fresh data directory started like the image (--domain hearth.local)
// (scripts/e2e/wizard.mjs): administrator account; the domain step refuses
// a bad name, then switches Hearth to family.test with manual DNS (the
// services restart in-process and the page continues by itself); the live
// DNS check asks Knot (--dns-resolver), first finds the _xmpp-server SRV
// record missing, and passes once the test added it (RFC 2136); the later
// steps, a first invitation; a CSRF-less POST is refused; the invitation's
// landing page registers a new account through the web form; the admin
// pages list it. Then slixmpp logs that account in at family.test, and
// finds the administrator (the inviter) in its roster (XEP-0379).
func TestWebWizardInviteRegistration(t *testing.T) {
	t.Parallel()
	requireBrowser(t)
	requireSlixmpp(t)
	requireHearth(t)
	const newDomain = "family.test"
	p := freePorts(t, 6)
	k := ddnstest.StartKnot(t, map[string]string{newDomain: "@ A 127.0.0.1\n* CNAME family.test.\n" +
		"_xmpp-client._tcp SRV 0 5 " + strconv.Itoa(p[0]) + " family.test.\n" +
		"_xmpps-client._tcp SRV 0 5 " + strconv.Itoa(p[1]) + " family.test.\n"})
	s := &server{workDir: t.TempDir(), data: "data", c2s: p[0], c2sTLS: p[1]}
	startServer(t, s, "serve",
		"--data", s.dataDir(), "--domain", "hearth.local", "--listen", "127.0.0.1",
		"--c2s-port", strconv.Itoa(p[0]), "--c2s-tls-port", strconv.Itoa(p[1]),
		"--s2s-port", strconv.Itoa(p[2]), "--http-port", strconv.Itoa(p[3]),
		"--https-port", strconv.Itoa(p[4]), "--turn-port", strconv.Itoa(p[5]),
		// Hearth's own STUN server answers the reachability check: on
		// loopback the public address is the local one, a direct connection.
		"--stun-servers", "127.0.0.1:"+strconv.Itoa(p[5]),
		// The domain step's live DNS check asks Knot.
		"--dns-resolver", k.Addr,
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
		"--user", "newbie", "--password", userPW,
		"--new-domain", newDomain)
	cmd.Dir = filepath.Join(repoRoot, "scripts", "e2e")
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); waitErr <- err }()
	// When the check first reports the missing record, publish it.
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	added := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if strings.HasPrefix(line, "DNSCHECK ") && strings.Contains(line, "missing") && !added {
			added = true
			addSRV(t, ctx, k, newDomain, "_xmpp-server._tcp", p[2])
		}
	}
	err := <-waitErr
	t.Logf("wizard.mjs:\n%s", out.String())
	if err != nil {
		t.Fatalf("wizard.mjs failed: %v", err)
	}
	got := out.String()
	if !strings.Contains(got, "\nPASS") || !strings.Contains(got, "REGISTERED newbie@"+newDomain) {
		t.Fatal("wizard.mjs did not pass")
	}
	if !strings.Contains(got, "DNSCHECK One DNS record is missing or wrong") || !strings.Contains(got, "DNSCHECK All DNS records are in place.") {
		t.Fatal("the live DNS check did not first report the missing SRV record, then pass")
	}
	if !strings.Contains(got, "REACH Reachable: Hearth has a public address of its own") {
		t.Fatal("the reachability check did not find the direct connection")
	}
	if !regexp.MustCompile(`INVITE https://family\.test:\d+/invite/[A-Z2-7]{26}`).MatchString(got) {
		t.Fatal("no invitation link for the new domain printed")
	}

	args := append(portArgs(s.c2s), s.tlsArgs(t)...)
	res := runScript(t, "login.py", append(args, "--jid", "newbie@"+newDomain, "--password", userPW)...)
	if !strings.Contains(res, "fetched the roster (1 items)") {
		t.Fatalf("the new account's roster should hold its inviter:\n%s", res)
	}
	runScript(t, "login.py", append(args, "--jid", "dad@"+newDomain, "--password", adminPW)...)
}

// addSRV adds "name SRV 0 5 port domain." to the zone at Knot (RFC 2136).
func addSRV(t *testing.T, ctx context.Context, k *ddnstest.Knot, domain, name string, port int) {
	t.Helper()
	prov, err := ddns.NewRFC2136(k.Addr, k.KeyName, k.KeyAlg, k.Secret)
	if err != nil {
		t.Error(err)
		return
	}
	svc, proto, _ := strings.Cut(name, ".")
	_, err = prov.AppendRecords(ctx, domain, []libdns.Record{libdns.SRV{
		Service: strings.TrimPrefix(svc, "_"), Transport: strings.TrimPrefix(proto, "_"), Name: "@",
		TTL: time.Minute, Priority: 0, Weight: 5, Port: uint16(port), Target: domain + ".",
	}})
	if err != nil {
		t.Errorf("adding %s: %v", name, err)
	}
}
