package server_test

// Benchmarks of the c2s hot paths over real loopback TLS. The load client
// runs in a child process (package leanbench), so every memory and
// allocation figure here (allocs/op, B/op and the custom metrics) is the
// server's: router, sessions, TLS, decoding, store reads, with the default
// info-level logging discarded. The client shares the machine's cores, so
// throughput is that of server and client together on this machine.

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean/leanbench"
)

// benchWindow is how many messages the sender may be ahead of the receiver.
const benchWindow = 100

// benchPassword is every benchmark account's password.
const benchPassword = "bench-pw"

// newBenchEnv starts a server on a loopback STARTTLS listener with the
// limits that would throttle a load test lifted (read rate, connections per
// address), as scripts/bench/run.sh starts hearth. It returns the server,
// its store and the listener's address; everything ends with b.
func newBenchEnv(b *testing.B) (*server.Server, *store.Store, string) {
	b.Helper()
	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(dir, "tls"), domain)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Domain: domain, Store: st, Certificate: cert,
		Limits: server.Limits{ReadBytesPerSecond: 1 << 30, MaxConnsPerIP: 100000},
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := srv.ListenC2S(ctx, "127.0.0.1:0", false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		st.Close()
	})
	return srv, st, a.String()
}

// addBenchUsers creates the accounts names with benchPassword (one salt for
// all: the keys are derived once).
func addBenchUsers(b *testing.B, st *store.Store, names ...string) {
	b.Helper()
	creds, err := auth.DeriveCredentials(benchPassword, auth.DefaultIterations)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]store.ScramKey, len(creds))
	for i, c := range creds {
		keys[i] = store.ScramKey{Hash: c.Hash, Salt: c.Salt, Iterations: c.Iterations, StoredKey: c.StoredKey, ServerKey: c.ServerKey}
	}
	for _, n := range names {
		if err := st.CreateAccount(context.Background(), n, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// memDelta reports the allocation deltas between m0 and m1 per op.
func memDelta(b *testing.B, m0, m1 *runtime.MemStats, unit string) {
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N), "server-allocs/"+unit)
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N), "server-B/"+unit)
}

// BenchmarkMessage1to1 sends b.N chat messages (body, origin-id, receipt
// request) from alice to bob's bare JID, both online over STARTTLS, with at
// most benchWindow messages in flight, and stops when bob has read them all.
// msgs/s is b.N over that time; server-allocs/msg and server-B/msg are the
// server process's allocations (decode, route, account check, serialize,
// TLS) per message.
func BenchmarkMessage1to1(b *testing.B) {
	_, st, addr := newBenchEnv(b)
	addBenchUsers(b, st, "alice", "bob")
	p := leanbench.Start(b, addr, domain)
	sender := p.Do("online alice %s phone", benchPassword)
	receiver := p.Do("online bob %s laptop", benchPassword)
	flood := func(n int) {
		p.Do("flood %s bob@%s chat %d %d %s", sender, domain, n, benchWindow, receiver)
	}
	flood(200) // warm-up: buffers, caches, TLS record sizes
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	flood(b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	memDelta(b, &m0, &m1, "msg")
}

// BenchmarkLogin runs b.N sequential logins of one account, each a new TCP
// connection with STARTTLS (TLS 1.3), SCRAM-SHA-256 (the client caches its
// salted password, as real clients do; the server stores only keys) and
// resource binding, then a closing stream tag. logins/s is b.N over the run.
func BenchmarkLogin(b *testing.B) {
	srv, st, addr := newBenchEnv(b)
	addBenchUsers(b, st, "carol")
	p := leanbench.Start(b, addr, domain)
	p.Do("logins 5 carol %s", benchPassword) // warm-up
	waitSessions(b, srv, 0)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	p.Do("logins %d carol %s", b.N, benchPassword)
	elapsed := time.Since(start)
	b.StopTimer()
	// Count the teardown of the last sessions too.
	waitSessions(b, srv, 0)
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "logins/s")
	memDelta(b, &m0, &m1, "login")
}

// waitSessions waits (bounded) until the server has n sessions.
func waitSessions(b *testing.B, srv *server.Server, n int) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for srv.SessionCount() != n {
		if time.Now().After(deadline) {
			b.Fatalf("server has %d sessions, want %d", srv.SessionCount(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// vmRSS returns this process's resident set size in bytes, or 0.
func vmRSS() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) * 1024
		}
	}
	return 0
}

// BenchmarkIdleSession logs in b.N accounts (STARTTLS, SCRAM-SHA-256, bind,
// initial presence; 8 in parallel), lets them settle and measures what the
// server holds for them. B/idle-session is the growth of HeapInuse+StackInuse
// after a full GC divided by b.N: the server's live heap (TLS state and
// buffers, stream decoder, session, router entry, presence) in in-use spans
// plus goroutine stacks; it excludes GC headroom (the heap grows to about
// twice the live size between collections under GOGC=100), kernel socket
// buffers and the client (another process). rss-B/idle-session is the
// growth of VmRSS over the same span, the figure the load tool compares
// across servers. stack-B/idle-session is the stack part of B/idle-session.
// goroutines/idle-session counts the server's goroutines.
// Use -benchtime=1000x for the load tool's N.
func BenchmarkIdleSession(b *testing.B) {
	srv, st, addr := newBenchEnv(b)
	names := make([]string, b.N)
	for i := range names {
		names[i] = "idle" + strconv.Itoa(i)
	}
	addBenchUsers(b, st, names...)
	p := leanbench.Start(b, addr, domain)
	runtime.GC()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0, rss0 := runtime.NumGoroutine(), vmRSS()
	b.ResetTimer()
	p.Do("many idle %d %s 8", b.N, benchPassword)
	b.StopTimer()
	waitSessions(b, srv, b.N)
	time.Sleep(time.Second) // writers drain and exit, handshake garbage dies
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	g1, rss1 := runtime.NumGoroutine(), vmRSS()
	inuse := func(m *runtime.MemStats) float64 { return float64(m.HeapInuse + m.StackInuse) }
	b.ReportMetric((inuse(&m1)-inuse(&m0))/float64(b.N), "B/idle-session")
	b.ReportMetric(float64(m1.StackInuse-m0.StackInuse)/float64(b.N), "stack-B/idle-session")
	b.ReportMetric((rss1-rss0)/float64(b.N), "rss-B/idle-session")
	b.ReportMetric(float64(g1-g0)/float64(b.N), "goroutines/idle-session")
	p.Do("closeall")
}
