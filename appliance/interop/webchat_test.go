package interop_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The web chat tests drive Hearth's /chat/ page (Converse.js, embedded by
// scripts/build-webclient.sh) in Debian's Chromium through
// scripts/e2e/webchat.mjs (playwright-core). Screenshots go to
// $HEARTH_ARTIFACTS/<test> when set, else $TMPDIR/hearth-artifacts/<test>
// (see artifactsDir); the test log names the directory.

const webchatScript = "webchat.mjs"

// requireWebClient needs a hearth built with the web client: /chat/ answers
// 200, not the 503 "not built" page.
func requireWebClient(t *testing.T, s *server) string {
	t.Helper()
	url := "https://127.0.0.1:" + strconv.Itoa(s.https) + "/chat/"
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfigInsecure()}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		unavailable(t, "hearth was built without the web client: run `make webclient` (scripts/build-webclient.sh) before building")
	case resp.StatusCode != http.StatusOK:
		t.Fatalf("GET %s: status %d\n%s", url, resp.StatusCode, b)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("GET %s: Content-Security-Policy %q", url, csp)
	}
	return "https://localhost:" + strconv.Itoa(s.https) + "/chat/"
}

// lineProc is a child process whose stdout lines are awaited one after the
// other; everything it prints (stdout and stderr) is logged at the end.
type lineProc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *lockedBuffer
	lines chan string   // stdout lines; closed at EOF
	done  chan struct{} // closed once the process has exited
	err   error
}

// startLineProc starts name args... in its own process group (so that a
// browser it started goes with it) and stops the group when the test ends.
func startLineProc(t *testing.T, label, dir, name string, args ...string) *lineProc {
	t.Helper()
	p := &lineProc{name: label, out: &lockedBuffer{}, lines: make(chan string, 1024), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stderr = p.out
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(p.out, sc.Text())
			select {
			case p.lines <- sc.Text():
			default: // nobody reads this many lines; they are in out anyway
			}
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		t.Logf("%s:\n%s", p.name, p.out)
	})
	return p
}

// waitLine returns the first stdout line starting with prefix, failing the
// test when the process ends or timeout passes first.
func (p *lineProc) waitLine(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("%s exited (%v) before printing %q", p.name, p.err, prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timer.C:
			t.Fatalf("%s did not print %q within %v", p.name, prefix, timeout)
		}
	}
}

// wait waits for the process to exit successfully with a PASS line.
func (p *lineProc) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Fatalf("%s still running after %v", p.name, timeout)
	}
	out := p.out.String()
	if p.err != nil || !strings.Contains(out, "\nPASS\n") && !strings.HasPrefix(out, "PASS\n") {
		t.Fatalf("%s failed (%v)", p.name, p.err)
	}
	return out
}

// TestWebChatPage: the real binary serves the web chat at /chat/: Chromium
// (with a German locale, so Converse loads a translation from the server)
// shows the login form with the domain locked to localhost, every request
// stays on Hearth's origin and the Content-Security-Policy is never
// violated. Screenshot: login.png.
func TestWebChatPage(t *testing.T) {
	t.Parallel()
	requireBrowser(t)
	s := startFresh(t)
	url := requireWebClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(repoRoot, "scripts", "e2e", webchatScript),
		"--url", url, "--artifacts", artifactsDir(t, "webchat-page"), "--locale", "de-DE")
	cmd.Dir = filepath.Join(repoRoot, "scripts", "e2e")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", webchatScript, out)
	if err != nil {
		t.Fatalf("%s failed: %v", webchatScript, err)
	}
	for _, want := range []string{`login form shown (domain addon "@localhost")`, "every request stayed on", "\nPASS"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("%s did not print %q", webchatScript, want)
		}
	}
}

// TestWebChatMUC: a family member without an app uses the web chat. In
// Chromium, alice logs in at /chat/, creates the group chat
// family@groups.localhost (members-only by default), invites bob through
// Converse's participants menu (which makes him a member and sends a
// XEP-0249 invitation), and sends a message over Hearth's WebSocket; bob,
// a slixmpp client (scripts/interop/muc_peer.py) waiting for the invitation,
// enters the room, receives the message and replies, and the reply shows in
// alice's browser. Screenshots: login.png, joined.png, sent.png, replied.png.
func TestWebChatMUC(t *testing.T) {
	t.Parallel()
	requireBrowser(t)
	requireSlixmpp(t)
	start := time.Now()
	s := startFresh(t)
	url := requireWebClient(t, s)
	alice, alicePW := s.addUser(t, "alice")
	bob, bobPW := s.addUser(t, "bob")
	room := "family@groups." + domain
	body := "Dinner at seven? " + rand.Text()[:6]
	reply := "Yes, see you there " + rand.Text()[:6]

	peerArgs := append([]string{scriptPath("muc_peer.py")}, portArgs(s.c2s)...)
	peerArgs = append(peerArgs, s.tlsArgs(t)...)
	peerArgs = append(peerArgs, "--jid", bob, "--password", bobPW, "--room", room, "--nick", "bob",
		"--from-nick", "alice", "--expect", body, "--reply", reply, "--wait-invite",
		"--wait", "120", "--timeout", "170")
	peer := startLineProc(t, "muc_peer.py (bob, slixmpp)", repoRoot, python, peerArgs...)
	peer.waitLine(t, "WAITING", readyTimeout)

	browser := startLineProc(t, webchatScript+" (alice, Chromium)", filepath.Join(repoRoot, "scripts", "e2e"), node,
		filepath.Join(repoRoot, "scripts", "e2e", webchatScript),
		"--url", url, "--artifacts", artifactsDir(t, "webchat-muc"),
		"--user", strings.TrimSuffix(alice, "@"+domain), "--password", alicePW,
		"--room", "family", "--invite", bob, "--body", body, "--expect-reply", reply)
	if got := browser.waitLine(t, "JOINED ", e2eTimeout); got != "JOINED "+room+" as alice" {
		t.Fatalf("the browser joined %q, want %s as alice", got, room)
	}
	browser.waitLine(t, "INVITED ", e2eTimeout)
	peer.waitLine(t, "READY", e2eTimeout)
	if _, err := io.WriteString(browser.stdin, "SEND\n"); err != nil {
		t.Fatalf("telling the browser to send: %v", err)
	}
	browser.waitLine(t, "SENT", e2eTimeout)
	if got := peer.waitLine(t, "BODY: ", e2eTimeout); got != "BODY: "+body {
		t.Fatalf("bob received %q, want %q", got, body)
	}
	browser.waitLine(t, "RECEIVED", e2eTimeout)
	peer.wait(t, e2eTimeout)
	out := browser.wait(t, e2eTimeout)
	if !strings.Contains(out, "every request stayed on") {
		t.Fatalf("%s did not check the requests", webchatScript)
	}
	t.Logf("web chat round trip done in %v (from starting hearth)", time.Since(start).Round(time.Millisecond))
}
