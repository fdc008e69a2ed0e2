package interop_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

const (
	nodeBin      = "/usr/bin/node"
	xmppjsWait   = 60 * time.Second // ws_chat.mjs's own --timeout is 45 s
	xmppjsScript = "ws_chat.mjs"
)

// requireXmppjs needs node and @xmpp/client 0.14.0 installed under
// scripts/interop/node (npm ci there; scripts/install-deps.sh does it).
func requireXmppjs(t *testing.T) {
	t.Helper()
	dir := filepath.Join(repoRoot, "scripts", "interop", "node")
	for _, p := range []string{nodeBin, filepath.Join(dir, "node_modules", "@xmpp", "client", "package.json")} {
		if _, err := os.Stat(p); err != nil {
			unavailable(t, "the xmpp.js test needs %s (Debian nodejs; npm ci in scripts/interop/node): %v", p, err)
		}
	}
}

var (
	nodeFlagsOnce sync.Once
	nodeFlags     []string
)

// nodeWebSocketFlags returns the flags that give node a global WebSocket,
// which @xmpp/websocket uses: Node 20 needs --experimental-websocket, Node
// 22 and later have it by default.
func nodeWebSocketFlags() []string {
	nodeFlagsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
		defer cancel()
		out, _ := exec.CommandContext(ctx, nodeBin, "-p", "typeof WebSocket").Output()
		if strings.TrimSpace(string(out)) != "function" {
			nodeFlags = []string{"--experimental-websocket"}
		}
	})
	return nodeFlags
}

// TestXmppjsWebSocket: npm's @xmpp/client 0.14.0 under node logs in over
// RFC 7395 WebSocket (wss, the certificate verified against the server's
// self-signed one; xmpp.js takes SASL2 with Bind 2 and stream management)
// and sends a message that slixmpp receives over TCP; a Go xmpptest client
// answers over TCP and xmpp.js receives it over the WebSocket; then xmpp.js
// closes the stream with <close/>.
func TestXmppjsWebSocket(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	requireXmppjs(t)
	s := startFresh(t)
	alice, alicePW := s.addUser(t, "alice")
	bob, bobPW := s.addUser(t, "bob")
	carol, carolPW := s.addUser(t, "carol")
	body := "xmpp.js over WebSocket " + rand.Text()[:8]
	reply := "reply over TCP " + rand.Text()[:8]
	recv := startReceiver(t, s, bob, bobPW, alice, body)

	ctx, cancel := context.WithTimeout(context.Background(), xmppjsWait)
	defer cancel()
	args := append(nodeWebSocketFlags(), filepath.Join(repoRoot, "scripts", "interop", "node", xmppjsScript),
		"--service", "wss://localhost:"+strconv.Itoa(s.https)+"/xmpp-websocket",
		"--domain", domain,
		"--username", strings.TrimSuffix(alice, "@"+domain), "--password", alicePW,
		"--to", bob, "--body", body, "--expect", reply, "--timeout", "45")
	cmd := exec.CommandContext(ctx, nodeBin, args...)
	cmd.Dir = filepath.Join(repoRoot, "scripts", "interop", "node")
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+filepath.Join(s.dataDir(), "tls", "cert.pem"))
	cmd.WaitDelay = 5 * time.Second
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	out := &strings.Builder{}
	next := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					cmd.Wait()
					t.Fatalf("%s ended before %q:\n%s\nstderr:\n%s", xmppjsScript, prefix, out, stderr)
				}
				fmt.Fprintln(out, l)
				if strings.HasPrefix(l, "FAIL") {
					cmd.Wait()
					t.Fatalf("%s:\n%s\nstderr:\n%s", xmppjsScript, out, stderr)
				}
				if strings.HasPrefix(l, prefix) {
					return strings.TrimSpace(strings.TrimPrefix(l, prefix))
				}
			case <-ctx.Done():
				t.Fatalf("no %q from %s within %v:\n%s\nstderr:\n%s", prefix, xmppjsScript, xmppjsWait, out, stderr)
			}
		}
	}
	full := next("ONLINE ")
	if !strings.HasPrefix(full, alice+"/") {
		t.Fatalf("xmpp.js bound %q, want %s/...", full, alice)
	}
	next("SENT")
	recv.wait(t, body)

	c := xmpptest.Dial(t, s.addr(), domain)
	c.Login(strings.TrimSuffix(carol, "@"+domain), carolPW, "tcp")
	c.Send("<message to='%s' type='chat'><body>%s</body></message>", full, reply)
	if from := next("RECEIVED "); !strings.HasPrefix(from, carol+"/") {
		t.Fatalf("xmpp.js got the reply from %q", from)
	}
	next("STOPPED")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s\nstderr:\n%s", xmppjsScript, err, out, stderr)
	}
	t.Logf("%s:\n%s\nstderr:\n%s", xmppjsScript, out, stderr)
}
