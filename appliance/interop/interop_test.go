// Package interop_test runs real XMPP clients against a real hearth binary.
//
// TestMain builds ./appliance/cmd/hearth once; each test starts `hearth serve`
// on free loopback ports in a fresh data directory (domain localhost), adds
// users with `hearth user add`, and drives Debian's clients:
//
//   - slixmpp 1.8.3 under /usr/bin/python3 (scripts/interop/*.py),
//   - go-sendxmpp (/usr/bin/go-sendxmpp).
//
// With HEARTH_INTEROP unset, a missing tool (or a hearth that does not build)
// skips the test; with HEARTH_INTEROP=1 (as `make test` sets) it fails.
// HEARTH_BIN=path tests that binary instead of building one.
// scripts/install-deps.sh installs the tools. Every wait is bounded.
package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	python   = "/usr/bin/python3" // Debian's: python3-slixmpp is installed for it
	sendxmpp = "/usr/bin/go-sendxmpp"
	domain   = "localhost"

	buildTimeout    = 10 * time.Minute
	startTimeout    = 30 * time.Second // until the c2s port accepts TCP
	stopTimeout     = 10 * time.Second // after SIGTERM
	cliTimeout      = 30 * time.Second // one `hearth user ...` command
	scriptTimeout   = 90 * time.Second // one python script (each has its own 60 s limit)
	sendxmppTimeout = 30 * time.Second
	readyTimeout    = 30 * time.Second // receiver logged in
)

var (
	repoRoot  string
	hearthBin string
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "hearth-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	hearthBin = filepath.Join(dir, "hearth")
	if bin := os.Getenv("HEARTH_BIN"); bin != "" {
		// A prebuilt binary (e.g. a -race build or a release) instead of building.
		hearthBin, buildErr = filepath.Abs(bin)
		return m.Run()
	}

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", hearthBin, "./appliance/cmd/hearth")
	cmd.Dir = root
	buildOut, buildErr = cmd.CombinedOutput()
	return m.Run()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// mandatory reports whether interop tests must run (HEARTH_INTEROP=1).
func mandatory() bool {
	v := os.Getenv("HEARTH_INTEROP")
	return v != "" && v != "0"
}

// unavailable skips the test, or fails it when interop tests are mandatory.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if mandatory() {
		t.Fatalf("%s (HEARTH_INTEROP is set, so this is a failure; scripts/install-deps.sh installs the tools)", msg)
	}
	t.Skipf("%s (set HEARTH_INTEROP=1 to make this a failure)", msg)
}

var (
	slixmppOnce sync.Once
	slixmppErr  error
)

// requireHearth needs the hearth binary; requireSlixmpp and requireSendxmpp the clients.
func requireHearth(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		unavailable(t, "hearth did not build: %v\n%s", buildErr, buildOut)
	}
}

func requireSlixmpp(t *testing.T) {
	t.Helper()
	slixmppOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, python, "-c", "import slixmpp").CombinedOutput()
		if err != nil {
			slixmppErr = fmt.Errorf("%s -c 'import slixmpp': %v %s", python, err, bytes.TrimSpace(out))
		}
	})
	if slixmppErr != nil {
		unavailable(t, "slixmpp is not available (Debian package python3-slixmpp): %v", slixmppErr)
	}
}

func requireSendxmpp(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sendxmpp); err != nil {
		unavailable(t, "go-sendxmpp is not available (Debian package go-sendxmpp): %v", err)
	}
}

// server is one running `hearth serve`.
type server struct {
	workDir string // the process's working directory
	data    string // --data as passed (relative to workDir or absolute)
	c2s     int    // STARTTLS port
	c2sTLS  int    // direct TLS port
	https   int    // HTTPS port (0 when not served)
	logPath string // stdout+stderr of the server
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// dataDir is the absolute data directory.
func (s *server) dataDir() string {
	if filepath.IsAbs(s.data) {
		return s.data
	}
	return filepath.Join(s.workDir, s.data)
}

// startServer runs `hearth <args>` in workDir, waits until 127.0.0.1:waitPort
// accepts TCP, and stops it (SIGTERM, then SIGKILL) when the test ends. Its
// output is logged when the test fails.
func startServer(t *testing.T, s *server, args ...string) {
	t.Helper()
	s.logPath = filepath.Join(t.TempDir(), "hearth.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(hearthBin, args...)
	s.cmd.Dir = s.workDir
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	s.done = make(chan struct{})
	t.Logf("starting: hearth %s", strings.Join(args, " "))
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start hearth: %v", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stop(t)
		out, _ := os.ReadFile(s.logPath)
		if bytes.Contains(out, []byte("panic:")) || bytes.Contains(out, []byte("DATA RACE")) {
			t.Errorf("hearth's output contains a panic or a data race")
		}
		if t.Failed() {
			const max = 64 << 10
			if len(out) > max {
				out = append([]byte("...\n"), out[len(out)-max:]...)
			}
			t.Logf("hearth output (%s):\n%s", s.logPath, out)
		}
	})
	s.waitListening(t, s.c2s)
}

func (s *server) waitListening(t *testing.T, port int) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.done:
			t.Fatalf("hearth exited before listening on %s: %v", addr, s.waitErr)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hearth is not accepting TCP on %s after %v: %v", addr, startTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) stop(t *testing.T) {
	select {
	case <-s.done:
		return // already exited; a failure was reported where it mattered
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(stopTimeout):
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
	}
	t.Errorf("hearth did not stop within %v of SIGTERM", stopTimeout)
}

// freePorts returns n distinct loopback ports that are free for TCP and UDP
// (the TURN port is both) at the time of the call.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			t.Fatalf("could not find %d free loopback ports", n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports
}

// startFresh starts hearth with every port on a free loopback port, plus
// extra flags.
func startFresh(t *testing.T, extra ...string) *server {
	t.Helper()
	requireHearth(t)
	p := freePorts(t, 8)
	s := &server{workDir: t.TempDir(), data: "data", c2s: p[0], c2sTLS: p[1], https: p[4]}
	args := []string{"serve",
		"--data", s.dataDir(),
		"--domain", domain,
		"--listen", "127.0.0.1",
		"--c2s-port", strconv.Itoa(p[0]),
		"--c2s-tls-port", strconv.Itoa(p[1]),
		"--s2s-port", strconv.Itoa(p[2]),
		"--http-port", strconv.Itoa(p[3]),
		"--https-port", strconv.Itoa(p[4]),
		"--turn-port", strconv.Itoa(p[5]),
		"--turns-port", strconv.Itoa(p[6]),
		"--proxy65-port", strconv.Itoa(p[7]),
	}
	startServer(t, s, append(args, extra...)...)
	s.waitListening(t, s.https)
	return s
}

// hearthCLI runs `hearth args...` in the server's working directory.
func (s *server) hearthCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hearthBin, args...)
	cmd.Dir = s.workDir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hearth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// addUser creates localpart@localhost with a random password and returns (jid, password).
func (s *server) addUser(t *testing.T, localpart string) (string, string) {
	t.Helper()
	jid := localpart + "@" + domain
	pw := rand.Text()
	s.hearthCLI(t, pw+"\n", "user", "add", jid, "--data", s.data)
	return jid, pw
}

// tlsArgs verifies the server certificate against DATA/tls/cert.pem when the
// server wrote one there, and turns verification off otherwise.
func (s *server) tlsArgs(t *testing.T) []string {
	t.Helper()
	cert := filepath.Join(s.dataDir(), "tls", "cert.pem")
	if _, err := os.Stat(cert); err == nil {
		return []string{"--ca", cert}
	}
	t.Logf("no %s: slixmpp will not verify the server certificate", cert)
	return []string{"--insecure"}
}

// lockedBuffer collects a child's output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func scriptPath(name string) string {
	return filepath.Join(repoRoot, "scripts", "interop", name)
}

// runScript runs a python script under /usr/bin/python3 and fails the test
// with its output when it exits non-zero.
func runScript(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{scriptPath(name)}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", name, out)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (killed after %v)", err, scriptTimeout)
		}
		t.Fatalf("%s failed: %v", name, err)
	}
	return string(out)
}

func portArgs(port int) []string {
	return []string{"--host", "127.0.0.1", "--port", strconv.Itoa(port)}
}

// TestSlixmppTwoUsers: roster, mutual subscription, presence, chat both ways,
// and an offline message with a XEP-0203 delay stamp (scripts/interop/two_users.py).
func TestSlixmppTwoUsers(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	s := startFresh(t)
	alice, alicePW := s.addUser(t, "alice")
	bob, bobPW := s.addUser(t, "bob")
	list := s.hearthCLI(t, "", "user", "list", "--data", s.data)
	for _, u := range []string{"alice", "bob"} {
		if !strings.Contains(list, u) {
			t.Errorf("hearth user list does not show %s:\n%s", u, list)
		}
	}
	args := append(portArgs(s.c2s), s.tlsArgs(t)...)
	args = append(args, "--alice", alice, "--alice-password", alicePW, "--bob", bob, "--bob-password", bobPW)
	runScript(t, "two_users.py", args...)
}

// TestSlixmppDirectTLS: a login on the direct TLS (XEP-0368) port.
func TestSlixmppDirectTLS(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	s := startFresh(t)
	s.waitListening(t, s.c2sTLS)
	jid, pw := s.addUser(t, "carol")
	args := append(portArgs(s.c2sTLS), s.tlsArgs(t)...)
	runScript(t, "login.py", append(args, "--direct-tls", "--jid", jid, "--password", pw)...)
}

// TestGoSendxmpp: go-sendxmpp (STARTTLS and direct TLS) sends to a connected
// slixmpp receiver (scripts/interop/receive_one.py).
func TestGoSendxmpp(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	requireSendxmpp(t)
	s := startFresh(t)
	s.waitListening(t, s.c2sTLS)
	alice, alicePW := s.addUser(t, "alice")
	bob, bobPW := s.addUser(t, "bob")
	for _, tc := range []struct {
		name  string
		port  int
		flags []string
	}{
		{"STARTTLS", s.c2s, nil},
		{"DirectTLS", s.c2sTLS, []string{"-t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "go-sendxmpp " + tc.name + " " + rand.Text()[:8]
			recv := startReceiver(t, s, bob, bobPW, alice, body)

			ctx, cancel := context.WithTimeout(context.Background(), sendxmppTimeout)
			defer cancel()
			// go-sendxmpp 0.5.6 can't take a CA file: -n skips verification.
			args := append([]string{"-n", "--timeout", "10",
				"-j", net.JoinHostPort("127.0.0.1", strconv.Itoa(tc.port)),
				"-u", alice, "-p", alicePW}, tc.flags...)
			args = append(args, bob)
			cmd := exec.CommandContext(ctx, sendxmpp, args...)
			home := t.TempDir() // keep a user's ~/.config/go-sendxmpp out
			cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
			cmd.Stdin = strings.NewReader(body + "\n")
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			if err != nil {
				recv.kill(t)
				t.Fatalf("go-sendxmpp %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			t.Logf("go-sendxmpp: ok\n%s", out)
			recv.wait(t, body)
		})
	}
}

type receiver struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// startReceiver starts receive_one.py as jid and returns once it printed READY.
func startReceiver(t *testing.T, s *server, jid, pw, from, body string) *receiver {
	t.Helper()
	args := append([]string{scriptPath("receive_one.py")}, portArgs(s.c2s)...)
	args = append(args, s.tlsArgs(t)...)
	args = append(args, "--jid", jid, "--password", pw, "--from", from, "--expect", body, "--wait", "30")
	r := &receiver{cmd: exec.Command(python, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	r.cmd.Stderr = r.out
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start receive_one.py: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(r.out, sc.Text())
			if !signalled && sc.Text() == "READY" {
				close(ready)
				signalled = true
			}
		}
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	select {
	case <-ready:
	case <-r.done:
		t.Fatalf("receive_one.py exited before READY: %v\n%s", r.err, r.out)
	case <-time.After(readyTimeout):
		t.Fatalf("receive_one.py not READY after %v:\n%s", readyTimeout, r.out)
	}
	return r
}

// kill stops the receiver early and logs what it printed.
func (r *receiver) kill(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	default:
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	t.Logf("receive_one.py (stopped):\n%s", r.out)
}

// wait checks that the receiver got body and exited successfully.
func (r *receiver) wait(t *testing.T, body string) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(scriptTimeout):
		_ = r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("receive_one.py still running after %v:\n%s", scriptTimeout, r.out)
	}
	t.Logf("receive_one.py:\n%s", r.out)
	if r.err != nil {
		t.Fatalf("receive_one.py failed: %v", r.err)
	}
	if !strings.Contains(r.out.String(), "BODY: "+body+"\n") {
		t.Fatalf("receive_one.py did not print BODY: %s", body)
	}
}

// TestMakeRunDefaults: `make run` (hearth serve --data data, nothing else)
// starts on the default ports 5222 (STARTTLS) and 5223 (direct TLS) on
// 127.0.0.1 with domain localhost, and accepts a login on both.
func TestMakeRunDefaults(t *testing.T) {
	t.Parallel()
	requireSlixmpp(t)
	requireHearth(t)
	for _, port := range []int{5222, 5223} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d on 127.0.0.1 is busy (%v): stop whatever holds it "+
				"(another XMPP server, a stray prosody, a `make run`) to test make run's defaults", port, err)
		}
		l.Close()
	}
	s := &server{workDir: t.TempDir(), data: "data", c2s: 5222, c2sTLS: 5223}
	startServer(t, s, "serve", "--data", s.data) // as `make run` does
	s.waitListening(t, s.c2sTLS)
	jid, pw := s.addUser(t, "alice")
	tlsArgs := s.tlsArgs(t)
	runScript(t, "login.py", append(append(portArgs(5222), tlsArgs...), "--jid", jid, "--password", pw)...)
	runScript(t, "login.py", append(append(portArgs(5223), tlsArgs...), "--direct-tls", "--jid", jid, "--password", pw)...)
}
