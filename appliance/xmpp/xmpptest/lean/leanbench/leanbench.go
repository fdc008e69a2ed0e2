// Package leanbench runs a [lean] XMPP client in a child process for Go
// benchmarks, so that the benchmark process's allocation and heap figures
// are the server's alone. The parent ([Start], [Proc.Do]) re-executes the
// test binary with -test.run=^TestBenchClientProcess$; the child's entry is
// a test of that name in the benchmarked package that calls [Child]:
//
//	func TestBenchClientProcess(t *testing.T) { leanbench.Child(t) }
//
// Parent and child speak a line protocol over the child's stdin and stdout:
// one command a line (see [Serve]), one answer a line, "bench: ok ..." or
// "bench: err ...". The child logs in with SCRAM-SHA-256 over STARTTLS and
// accepts any server certificate (benchmarks use self-signed ones).
package leanbench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean"
)

// EntryTest is the name of the test function that must call [Child] in
// every package that uses [Start].
const EntryTest = "TestBenchClientProcess"

// Environment of the child process.
const (
	envChild  = "HEARTH_BENCH_CLIENT" // "1" in the child
	envAddr   = "HEARTH_BENCH_ADDR"
	envDomain = "HEARTH_BENCH_DOMAIN"
)

// Step bounds every single wait of the client: one login, one element, one
// write.
const Step = 20 * time.Second

// MaxTime bounds a whole command of the client (a flood, a series of
// logins, the set-up of many sessions); [Proc.Do] waits for an answer at
// most MaxTime plus 30 s.
const MaxTime = 120 * time.Second

// floodBody is the body of every flood message.
const floodBody = "Are we still on for dinner tonight? I can bring the salad."

// Child is the client process's entry point, called by the benchmarked
// package's TestBenchClientProcess. In a normal test run (not started by
// [Start]) it skips t at once; in the child it serves commands from stdin
// until stdin ends, then closes every session.
func Child(t testing.TB) {
	if os.Getenv(envChild) != "1" {
		t.Skip("bench client child process only")
	}
	if err := Serve(os.Stdin, os.Stdout, os.Getenv(envAddr), os.Getenv(envDomain)); err != nil {
		t.Fatal(err)
	}
}

// session is one logged-in stream of the child and its counting reader,
// if started.
type session struct {
	c    *lean.Conn
	r    *lean.Reader
	kind lean.Count
}

// client is the child's state.
type client struct {
	addr, domain string
	tls          *tls.Config
	sess         []*session
}

// Serve runs the client's command loop: it reads commands from r, one per
// line, runs them against the STARTTLS listener addr serving domain, and
// writes one answer line per command to w ("bench: ok [RESULT]" or "bench:
// err MESSAGE"). It returns when r ends (nil) or on an error of r or w,
// after closing every session. Commands (sessions are numbered from 0 in
// login order; accounts log in with SCRAM-SHA-256, bind, send initial
// presence and wait for the server to have processed it):
//
//	online USER PASSWORD RESOURCE        log in; answers the session index
//	many PREFIX COUNT PASSWORD WORKERS   log in PREFIX0..PREFIX{COUNT-1} (resource idle) with
//	                                     WORKERS in parallel; answers the session count
//	raw I XML...                         write the rest of the line on session I
//	wait I NAME                          read session I until a top-level element named NAME or
//	                                     containing one (lean.Contains); the others are dropped
//	flood I TO TYPE N WINDOW J,K,...     session I sends N messages of TYPE (chat, groupchat) with
//	                                     a body, origin-id and receipt request to TO, at most WINDOW
//	                                     ahead of the slowest of sessions J,K,...; done when each
//	                                     of them received N more messages of TYPE with a body
//	logins N USER PASSWORD               N sequential logins (STARTTLS, SCRAM-SHA-256, bind of a
//	                                     server-generated resource), each closed at once
//	closeall                             close every session
//
// A session that counted in a flood is read only by its counter from then
// on: wait on it is an error, and so is a flood that counts another TYPE on
// it. Every wait is bounded by [Step], a flood, logins or many by [MaxTime].
func Serve(r io.Reader, w io.Writer, addr, domain string) error {
	bc := &client{addr: addr, domain: domain,
		tls: &tls.Config{InsecureSkipVerify: true, ServerName: domain, MinVersion: tls.VersionTLS12}}
	defer bc.closeAll()
	in := bufio.NewScanner(r)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	for in.Scan() {
		out, err := bc.run(strings.Fields(in.Text()), in.Text())
		var werr error
		if err != nil {
			_, werr = fmt.Fprintf(w, "bench: err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			_, werr = fmt.Fprintf(w, "bench: ok %s\n", out)
		}
		if werr != nil {
			return werr
		}
	}
	return in.Err()
}

func (bc *client) closeAll() {
	for _, s := range bc.sess {
		s.c.NetConn().SetWriteDeadline(time.Now().Add(Step))
		s.c.CloseStream()
		s.c.Abort()
	}
	bc.sess = nil
}

func (bc *client) session(arg string) (*session, error) {
	i, err := strconv.Atoi(arg)
	if err != nil || i < 0 || i >= len(bc.sess) {
		return nil, fmt.Errorf("no session %q", arg)
	}
	return bc.sess[i], nil
}

// login logs user in with resource ("" for a server-generated one), bounded
// by Step, and clears the connection's deadline.
func (bc *client) login(cred *lean.Credentials, resource string) (*lean.Conn, error) {
	d := &lean.Dialer{Addr: bc.addr, Domain: bc.domain, Resource: resource, TLS: bc.tls}
	deadline := time.Now().Add(Step)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	c, err := d.Login(ctx, deadline, cred)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// online logs user in and makes it available (lean.Conn.Available).
func (bc *client) online(user, password, resource string) (*session, error) {
	cred, err := lean.NewCredentials(lean.SCRAMSHA256, user, password)
	if err != nil {
		return nil, err
	}
	c, err := bc.login(cred, resource)
	if err != nil {
		return nil, err
	}
	if err := c.Available(); err != nil {
		c.Abort()
		return nil, err
	}
	c.NetConn().SetDeadline(time.Time{})
	return &session{c: c}, nil
}

// run executes one command (see Serve).
func (bc *client) run(f []string, line string) (string, error) {
	if len(f) == 0 {
		return "", errors.New("empty command")
	}
	switch {
	case f[0] == "online" && len(f) == 4:
		s, err := bc.online(f[1], f[2], f[3])
		if err != nil {
			return "", err
		}
		bc.sess = append(bc.sess, s)
		return strconv.Itoa(len(bc.sess) - 1), nil
	case f[0] == "many" && len(f) == 5:
		return bc.many(f[1], f[2], f[3], f[4])
	case f[0] == "raw" && len(f) >= 3:
		s, err := bc.session(f[1])
		if err != nil {
			return "", err
		}
		xml := strings.TrimSpace(line[strings.Index(line, f[1])+len(f[1]):])
		s.c.NetConn().SetWriteDeadline(time.Now().Add(Step))
		return "", s.c.Write([]byte(xml))
	case f[0] == "wait" && len(f) == 3:
		s, err := bc.session(f[1])
		if err != nil {
			return "", err
		}
		if s.r != nil {
			return "", errors.New("wait on a counting session")
		}
		s.c.NetConn().SetReadDeadline(time.Now().Add(Step))
		_, err = s.c.WaitContaining(f[2])
		return "", err
	case f[0] == "flood" && len(f) == 7:
		return "", bc.flood(f[1:])
	case f[0] == "logins" && len(f) == 4:
		return "", bc.logins(f[1], f[2], f[3])
	case f[0] == "closeall" && len(f) == 1:
		bc.closeAll()
		return "", nil
	}
	return "", fmt.Errorf("bad command %q", line)
}

// many is the many command.
func (bc *client) many(prefix, count, password, workers string) (string, error) {
	n, err1 := strconv.Atoi(count)
	w, err2 := strconv.Atoi(workers)
	if err := errors.Join(err1, err2); err != nil || n < 0 || w < 1 {
		return "", fmt.Errorf("many: bad count or workers (%v)", err)
	}
	ss := make([]*session, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	// Workers start no login after the deadline (each login is bounded by
	// Step), so the command ends within MaxTime plus one Step.
	deadline := time.Now().Add(MaxTime)
	for range w {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if time.Now().After(deadline) {
					errs[i] = fmt.Errorf("not started within %v", MaxTime)
					continue
				}
				ss[i], errs[i] = bc.online(prefix+strconv.Itoa(i), password, "idle")
			}
		})
	}
	wg.Wait()
	var first error
	for i, s := range ss {
		if errs[i] != nil && first == nil {
			first = fmt.Errorf("login %s%d: %w", prefix, i, errs[i])
		}
		if s != nil {
			bc.sess = append(bc.sess, s)
		}
	}
	if first != nil {
		return "", first
	}
	return strconv.Itoa(len(bc.sess)), nil
}

// logins is the logins command.
func (bc *client) logins(count, user, password string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	cred, err := lean.NewCredentials(lean.SCRAMSHA256, user, password)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(MaxTime)
	for i := range n {
		if time.Now().After(deadline) {
			return fmt.Errorf("logins: only %d of %d within %v", i, n, MaxTime)
		}
		c, err := bc.login(cred, "")
		if err != nil {
			return fmt.Errorf("login %d: %w", i, err)
		}
		c.CloseStream()
		c.Abort()
	}
	return nil
}

// counter starts s's counting reader for kind, or checks the one running
// counts kind.
func (s *session) counter(kind lean.Count) error {
	if s.r == nil {
		s.c.NetConn().SetReadDeadline(time.Time{})
		s.r, s.kind = s.c.StartReader(kind, ""), kind
		return nil
	}
	if s.kind != kind && kind != lean.CountNothing {
		return errors.New("flood: the session already counts another message type")
	}
	return nil
}

// flood is the flood command; f is its arguments.
func (bc *client) flood(f []string) error {
	sender, err := bc.session(f[0])
	if err != nil {
		return err
	}
	n, err1 := strconv.Atoi(f[3])
	window, err2 := strconv.Atoi(f[4])
	if err := errors.Join(err1, err2); err != nil || n < 0 || window < 1 {
		return fmt.Errorf("flood: bad count or window (%v)", err)
	}
	kind := lean.CountChat
	if f[2] == "groupchat" {
		kind = lean.CountGroupchat
	}
	var counters []*session
	for _, a := range strings.Split(f[5], ",") {
		s, err := bc.session(a)
		if err != nil {
			return err
		}
		if err := s.counter(kind); err != nil {
			return err
		}
		counters = append(counters, s)
	}
	// The sender's input is drained too (receipts, errors).
	if err := sender.counter(lean.CountNothing); err != nil {
		return err
	}
	base := make([]int64, len(counters))
	for i, s := range counters {
		base[i] = s.r.Count()
	}
	// slowest returns the slowest counter and how many messages it got.
	slowest := func() (*session, int64) {
		var low int64 = -1
		var ls *session
		for i, s := range counters {
			if got := s.r.Count() - base[i]; low < 0 || got < low {
				low, ls = got, s
			}
		}
		return ls, low
	}
	msg := lean.MessageWithReceipt(f[1], f[2], "bench", floodBody)
	timer := time.NewTimer(MaxTime)
	defer timer.Stop()
	// waitFor waits until the slowest counter has want: woken by that
	// counter's notifications (a buffered one may be stale; then it looks
	// again), bounded by the timer and the counter's end.
	waitFor := func(want int64) error {
		for {
			s, got := slowest()
			if got >= want {
				return nil
			}
			select {
			case <-s.r.Notify():
			case <-s.r.Done():
				if s2, got := slowest(); s2 == s && got < want {
					return fmt.Errorf("flood: a receiver's stream ended with %d of %d: %v", got, want, s.r.Err())
				}
			case <-timer.C:
				return fmt.Errorf("flood: slowest receiver has %d of %d after %v", got, want, MaxTime)
			}
		}
	}
	for sent := range n {
		if err := waitFor(int64(sent - window)); err != nil {
			return err
		}
		sender.c.NetConn().SetWriteDeadline(time.Now().Add(Step))
		if err := sender.c.Write(msg); err != nil {
			return err
		}
	}
	return waitFor(int64(n))
}

// errBuf collects the child's stderr, up to 64 KiB.
type errBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *errBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *errBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is the parent's handle on the client process. Its methods must be
// called from the benchmark's goroutine (they fail tb).
type Proc struct {
	tb    testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	errb  *errBuf
}

// Start starts the client process (this test binary running [EntryTest],
// which must call [Child]) against the STARTTLS listener addr (host:port)
// serving domain. The process ends when tb's cleanup closes its stdin
// (killed after 10 s if it does not). A failure to start fails tb.
func Start(tb testing.TB, addr, domain string) *Proc {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+EntryTest+"$", "-test.timeout=15m", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1", envAddr+"="+addr, envDomain+"="+domain)
	p := &Proc{tb: tb, cmd: cmd, lines: make(chan string, 16), errb: &errBuf{}}
	cmd.Stderr = p.errb
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "bench: "); ok {
				p.lines <- l
			}
		}
		close(p.lines)
	}()
	tb.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// Do sends one command (fmt.Sprintf(format, args...), see [Serve]) and
// returns the answer after "ok", trimmed. An error answer, the process's
// exit or no answer within [MaxTime] plus 30 s fails tb (with the child's
// stderr).
func (p *Proc) Do(format string, args ...any) string {
	p.tb.Helper()
	line := fmt.Sprintf(format, args...)
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.tb.Fatalf("bench client: %v (stderr: %s)", err, p.errb.String())
	}
	t := time.NewTimer(MaxTime + 30*time.Second)
	defer t.Stop()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.tb.Fatalf("bench client exited during %q (stderr: %s)", line, p.errb.String())
		}
		if rest, ok := strings.CutPrefix(l, "ok"); ok {
			return strings.TrimSpace(rest)
		}
		p.tb.Fatalf("bench client %q: %s", line, l)
	case <-t.C:
		p.tb.Fatalf("bench client: no answer to %q (stderr: %s)", line, p.errb.String())
	}
	return ""
}
