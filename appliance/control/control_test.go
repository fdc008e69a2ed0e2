package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// start serves s on a fresh data directory until the test ends.
func start(t *testing.T, s *Server) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := s.Listen(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wait() })
	return dir
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func echoServer() *Server {
	s := NewServer(quiet())
	s.Handle("echo", func(ctx context.Context, args json.RawMessage) (any, error) {
		var a struct{ Text string }
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, Errorf(CodeBadRequest, "bad args: %v", err)
		}
		if a.Text == "" {
			return nil, Errorf(CodeNotFound, "nothing to echo")
		}
		return map[string]string{"text": a.Text}, nil
	})
	s.Handle("fail", func(ctx context.Context, args json.RawMessage) (any, error) {
		return nil, errors.New("disk on fire")
	})
	s.Handle("panic", func(ctx context.Context, args json.RawMessage) (any, error) {
		panic("boom")
	})
	return s
}

func TestRoundTrip(t *testing.T) {
	dir := start(t, echoServer())
	fi, err := os.Stat(SocketPath(dir))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v %v", fi.Mode(), err)
	}
	ctx := context.Background()
	var res struct{ Text string }
	if err := Call(ctx, dir, "echo", map[string]string{"text": "hello"}, &res); err != nil || res.Text != "hello" {
		t.Fatalf("echo: %+v %v", res, err)
	}
	var ce *Error
	if err := Call(ctx, dir, "echo", map[string]string{}, nil); !errors.As(err, &ce) || ce.Code != CodeNotFound || ce.Message != "nothing to echo" {
		t.Fatalf("handler error: %#v", err)
	}
	if err := Call(ctx, dir, "fail", nil, nil); !errors.As(err, &ce) || ce.Code != CodeFailed || !strings.Contains(ce.Message, "disk on fire") {
		t.Fatalf("plain error: %#v", err)
	}
	if err := Call(ctx, dir, "panic", nil, nil); !errors.As(err, &ce) || ce.Code != CodeFailed {
		t.Fatalf("panic: %#v", err)
	}
	// The server survived the panic.
	if err := Call(ctx, dir, "echo", map[string]string{"text": "still here"}, &res); err != nil || res.Text != "still here" {
		t.Fatalf("after panic: %+v %v", res, err)
	}
}

func TestUnknownCommand(t *testing.T) {
	dir := start(t, echoServer())
	var ce *Error
	err := Call(context.Background(), dir, "frobnicate", nil, nil)
	if !errors.As(err, &ce) || ce.Code != CodeUnknownCommand || !strings.Contains(ce.Message, "frobnicate") {
		t.Fatalf("unknown command: %#v", err)
	}
}

// rawRequest writes line to the socket and returns the reply line.
func rawRequest(t *testing.T, dir, line string) reply {
	t.Helper()
	c, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, line) // may fail once the server closes
	b, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	var rep reply
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("reply %q: %v", b, err)
	}
	return rep
}

func TestOversizedRequestRefused(t *testing.T) {
	dir := start(t, echoServer())
	big := `{"command":"echo","args":{"text":"` + strings.Repeat("a", MaxRequestBytes) + `"}}` + "\n"
	if rep := rawRequest(t, dir, big); rep.OK || rep.Code != CodeTooLarge {
		t.Fatalf("oversized request: %+v", rep)
	}
	// Call refuses to send one.
	var ce *Error
	if err := Call(context.Background(), dir, "echo", map[string]string{"text": strings.Repeat("a", MaxRequestBytes)}, nil); !errors.As(err, &ce) || ce.Code != CodeTooLarge {
		t.Fatalf("Call with an oversized request: %v", err)
	}
	// Markup is sent as typed, not HTML-escaped to six bytes a character:
	// a text of <, > and & that fits, fits.
	markup := strings.Repeat("<&>", MaxRequestBytes/4)
	var echoed map[string]string
	if err := Call(context.Background(), dir, "echo", map[string]string{"text": markup}, &echoed); err != nil || echoed["text"] != markup {
		t.Fatalf("Call with markup: %v", err)
	}
	// Not JSON.
	if rep := rawRequest(t, dir, "hello\n"); rep.OK || rep.Code != CodeBadRequest {
		t.Fatalf("bad request: %+v", rep)
	}
	// Several requests on one connection, each answered.
	c, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, text := range []string{"one", "two"} {
		io.WriteString(c, `{"command":"echo","args":{"text":"`+text+`"}}`+"\n")
		b, err := r.ReadBytes('\n')
		if err != nil || !strings.Contains(string(b), `"text":"`+text+`"`) {
			t.Fatalf("request %s: %q %v", text, b, err)
		}
	}
}

func TestWrongPeerRefused(t *testing.T) {
	s := echoServer()
	var seen []uint32
	s.allow = func(uid uint32) bool { seen = append(seen, uid); return false }
	dir := start(t, s)
	var ce *Error
	if err := Call(context.Background(), dir, "echo", map[string]string{"text": "x"}, nil); !errors.As(err, &ce) || ce.Code != "forbidden" {
		t.Fatalf("refused peer: %#v", err)
	}
	// The check saw this process's uid (SO_PEERCRED).
	if len(seen) != 1 || seen[0] != uint32(os.Getuid()) {
		t.Fatalf("peer uids %v, want [%d]", seen, os.Getuid())
	}
}

func TestNotRunningAndStaleSocket(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if err := Call(ctx, dir, "echo", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no socket: %v", err)
	}
	// A socket file nobody listens on, as a crash leaves it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(SocketPath(dir)); err != nil {
		t.Fatal(err)
	}
	if err := Call(ctx, dir, "echo", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stale socket: %v", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	wait, err := echoServer().Listen(sctx, dir)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	var res struct{ Text string }
	if err := Call(ctx, dir, "echo", map[string]string{"text": "hi"}, &res); err != nil || res.Text != "hi" {
		t.Fatalf("after replacing: %v", err)
	}
	// A second server on the same directory is refused, and leaves the
	// first one's socket alone.
	if _, err := echoServer().Listen(ctx, dir); !errors.Is(err, ErrRunning) {
		t.Fatalf("second server: %v", err)
	}
	if err := Call(ctx, dir, "echo", map[string]string{"text": "hi"}, &res); err != nil {
		t.Fatalf("first server after the second one's attempt: %v", err)
	}
	cancel()
	wait()
	if _, err := os.Lstat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	if err := Call(ctx, dir, "echo", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after shutdown: %v", err)
	}
	// Something that is not a socket is left alone.
	os.WriteFile(SocketPath(dir), []byte("x"), 0o600)
	if _, err := echoServer().Listen(ctx, dir); err == nil || errors.Is(err, ErrRunning) {
		t.Fatalf("regular file at the socket path: %v", err)
	}
}

// A handler still running when the server stops sees its context end, and
// wait returns after it.
func TestShutdownCancelsHandlers(t *testing.T) {
	s := NewServer(quiet())
	started := make(chan struct{})
	s.Handle("block", func(ctx context.Context, args json.RawMessage) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := s.Listen(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- Call(context.Background(), dir, "block", nil, nil) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never started")
	}
	cancel()
	wait()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("call succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call never returned")
	}
}

// TestServerLock: one server per data directory; while it holds the lock
// without a socket (restarting), Call says so instead of ErrNotRunning, so
// that commands do not act on the database behind its back.
func TestServerLock(t *testing.T) {
	dir := t.TempDir()
	if Running(dir) {
		t.Fatal("Running before any lock")
	}
	release, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Lock = %v, want ErrRunning", err)
	}
	if !Running(dir) {
		t.Fatal("Running = false while locked")
	}
	if err := Call(context.Background(), dir, "echo", nil, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Call while locked without a socket = %v, want ErrUnavailable", err)
	}
	release()
	if Running(dir) {
		t.Fatal("Running after release")
	}
	if err := Call(context.Background(), dir, "echo", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Call after release = %v, want ErrNotRunning", err)
	}
	release, err = Lock(dir)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	release()
}
