package interop_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A namespace on "the internet" for the wizard's address check: a veth pair
// between the host (where Hearth listens) and the namespace (where Chromium
// runs), on TEST-NET-2 (RFC 5737): neither private, loopback nor
// link-local, so Hearth must treat the browser as a stranger. Nothing is
// routed beyond the pair. The names are fixed: one run at a time.
const (
	wanNS     = "hw-wan"
	wanHostIf = "hw-h0" // in the host's namespace
	wanNSIf   = "hw-n0" // in wanNS
	wanHost   = "198.51.100.1"
	wanClient = "198.51.100.2"
	ipTool    = "/usr/sbin/ip"
	ipTimeout = 10 * time.Second // one ip command
)

// requireWANNetns needs what TestWebWizardRefusedFromInternet runs: the
// hearth binary, Chromium with playwright-core, root and iproute2.
func requireWANNetns(t *testing.T) {
	t.Helper()
	requireHearth(t)
	requireBrowser(t)
	if os.Geteuid() != 0 {
		unavailable(t, "network namespaces need root")
	}
	if _, err := os.Stat(ipTool); err != nil {
		unavailable(t, "%s is missing (Debian package iproute2): %v", ipTool, err)
	}
}

// wanUp creates wanNS with wanClient, linked to wanHost on the host, and
// removes both (namespace and pair) when the test ends; leftovers of an
// earlier run are removed first.
func wanUp(t *testing.T) {
	t.Helper()
	ip := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, ipTool, args...)
		cmd.WaitDelay = 5 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	down := func() {
		ip("link", "del", wanHostIf) // takes its peer along
		ip("netns", "del", wanNS)
	}
	down()
	t.Cleanup(down)
	for _, args := range [][]string{
		{"netns", "add", wanNS},
		{"-n", wanNS, "link", "set", "lo", "up"},
		{"link", "add", wanHostIf, "type", "veth", "peer", "name", wanNSIf, "netns", wanNS},
		{"addr", "add", wanHost + "/24", "dev", wanHostIf},
		{"link", "set", wanHostIf, "up"},
		{"-n", wanNS, "addr", "add", wanClient + "/24", "dev", wanNSIf},
		{"-n", wanNS, "link", "set", wanNSIf, "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
}

// wizardWAN runs scripts/e2e/wizard-wan.mjs (in wanNS when ns is set) and
// returns its output; it fails the test unless the script printed PASS.
func wizardWAN(t *testing.T, ns string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	argv := append([]string{node, filepath.Join(repoRoot, "scripts", "e2e", "wizard-wan.mjs")}, args...)
	if ns != "" {
		argv = append([]string{ipTool, "netns", "exec", ns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = filepath.Join(repoRoot, "scripts", "e2e")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	where := "on the host"
	if ns != "" {
		where = "in " + ns
	}
	t.Logf("wizard-wan.mjs %s:\n%s", where, out)
	if err != nil || !strings.Contains("\n"+string(out), "\nPASS\n") {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (killed after %v)", err, e2eTimeout)
		}
		t.Fatalf("wizard-wan.mjs %s failed: %v", where, err)
	}
	return string(out)
}

// setupPage fetches base/setup without following redirects and returns
// the status, the body and the CSRF cookie set (if any).
func setupPage(t *testing.T, c *http.Client, base string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(base + "/setup")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	cookie := ""
	for _, ck := range resp.Cookies() {
		if ck.Name == "hearth_csrf" {
			cookie = ck.Value
		}
	}
	return resp.StatusCode, string(b), cookie
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

// TestWebWizardRefusedFromInternet: before an administrator exists, a
// browser on a non-local address (Chromium in a network namespace on
// TEST-NET-2, talking to Hearth's own address on that link) gets only plain
// refusal pages over HTTP and HTTPS: / answers 503 "Hearth is being set
// up", /setup and /setup/domain 403 "Not available from here", and a POST
// /setup carrying a CSRF cookie and token that are valid on the local
// network is refused the same way (scripts/e2e/wizard-wan.mjs). From
// 127.0.0.1 the same Hearth still offers step 1's form (in Chromium), the
// same CSRF pair gets past the CSRF check (a POST with two different
// passwords is answered by the form, 400), Hearth logged the refusals with
// the namespace's address, and no account exists.
func TestWebWizardRefusedFromInternet(t *testing.T) {
	requireWANNetns(t)
	wanUp(t)
	p := freePorts(t, 5)
	s := &server{workDir: t.TempDir(), data: "data", c2s: p[0], c2sTLS: p[1], https: p[4]}
	startServer(t, s, "serve",
		"--data", s.dataDir(), "--domain", "hearth.local", "--listen", "127.0.0.1,"+wanHost,
		"--c2s-port", strconv.Itoa(p[0]), "--c2s-tls-port", strconv.Itoa(p[1]),
		"--s2s-port", strconv.Itoa(p[2]), "--http-port", strconv.Itoa(p[3]),
		"--https-port", strconv.Itoa(p[4]),
		"--turn-port", "0", "--turns-port", "0", "--proxy65-port", "0",
	)
	s.waitListening(t, p[3])
	s.waitListening(t, p[4])
	localHTTP := "http://127.0.0.1:" + strconv.Itoa(p[3])
	wanHTTP := "http://" + wanHost + ":" + strconv.Itoa(p[3])
	wanHTTPS := "https://" + wanHost + ":" + strconv.Itoa(p[4])

	// A CSRF pair handed out on the local side (step 1's form).
	c := &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	status, body, cookie := setupPage(t, c, localHTTP)
	m := csrfField.FindStringSubmatch(body)
	if status != http.StatusOK || cookie == "" || m == nil {
		t.Fatalf("local GET /setup: status %d, CSRF cookie %q, token found %v:\n%s", status, cookie, m != nil, body)
	}
	token := m[1]

	adminPW := rand.Text()
	out := wizardWAN(t, wanNS, "--from", "wan", "--url", wanHTTP, "--url", wanHTTPS,
		"--artifacts", artifactsDir(t, "webui-wizard-wan"),
		"--csrf-cookie", cookie, "--csrf-token", token,
		"--admin", "mallory", "--admin-password", adminPW)
	for _, base := range []string{wanHTTP, wanHTTPS} {
		for _, want := range []string{
			"REFUSED GET " + base + "/ 503 Hearth is being set up",
			"REFUSED GET " + base + "/setup 403 Not available from here",
			"REFUSED GET " + base + "/setup/domain 403 Not available from here",
			"REFUSED POST " + base + "/setup 403 Not available from here",
		} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("wizard-wan.mjs did not print %q", want)
			}
		}
	}

	// From the host the wizard's first step is there, in Chromium too.
	out = wizardWAN(t, "", "--from", "local", "--url", localHTTP,
		"--artifacts", artifactsDir(t, "webui-wizard-local"))
	if !strings.Contains(out, "WIZARD "+localHTTP+"/setup 200 form\n") {
		t.Error("wizard-wan.mjs did not find step 1's form from 127.0.0.1")
	}

	// The pair the namespace sent passes the CSRF check locally: the form
	// itself answers (two different passwords), so only the address made
	// Hearth refuse the namespace's POST.
	form := url.Values{"csrf": {token}, "username": {"mallory"}, "password": {adminPW}, "password2": {adminPW + "x"}}
	req, err := http.NewRequest(http.MethodPost, localHTTP+"/setup", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "hearth_csrf", Value: cookie})
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "The two passwords are not the same.") {
		t.Errorf("local POST /setup with the same CSRF pair and two different passwords: status %d, want 400 from the form:\n%s", resp.StatusCode, b)
	}

	if status, body, _ := setupPage(t, c, localHTTP); status != http.StatusOK || !strings.Contains(body, `name="username"`) {
		t.Errorf("local GET /setup at the end: status %d, want 200 with the form:\n%s", status, body)
	}
	if list := s.hearthCLI(t, "", "user", "list", "--data", s.data); strings.TrimSpace(list) != "" {
		t.Errorf("accounts exist after the refused POSTs:\n%s", list)
	}
	logged, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for _, line := range strings.Split(string(logged), "\n") {
		if strings.Contains(line, "setup wizard refused to a non-local address") && strings.Contains(line, wanClient) {
			refusals++
		}
	}
	// GET /setup twice, GET /setup/domain and POST /setup, over HTTP and HTTPS.
	if refusals < 8 {
		t.Errorf("hearth logged %d refusals of %s by the wizard, want at least 8", refusals, wanClient)
	}
}
