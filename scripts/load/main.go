// Command load is the benchmark load client of `make bench` (docs/BENCHMARKS.md):
// it drives one XMPP server (Hearth, Prosody, ejabberd) over client-to-server
// streams with STARTTLS, SASL SCRAM-SHA-1 and resource binding (RFC 6120) and
// prints one figure per run.
//
//	go run ./scripts/load --addr 127.0.0.1:5222 --domain bench.hearth --mode MODE [flags] --json
//
// Modes: register (XEP-0077 accounts user00000..), idle (server RSS per idle
// session: the slope (r2-r1)/(N-N/2) between the settled RSS r1 with N/2
// sessions and r2 with N, so start-up and first-use costs are not counted),
// login (full logins per second), message (1:1 chat messages
// delivered per second), muc (XEP-0045 groupchat stanzas delivered per
// second). Every phase is bounded by --max-time; a run that did not finish
// reports incomplete:true with what it reached.
//
// The client shares the CPU with the server under test, so it is lean: stanza
// bytes are built once, each connection has one reading goroutine with a
// tag-nesting scanner (no XML tree on the hot path), receipts are counted
// with atomics.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean"
)

// config holds the command-line flags.
type config struct {
	addr, domain, mode, label  string
	password, prefix, resource string
	mucDomain, room, roomForm  string
	tlsName                    string
	tlsInsecure, json, warmup  bool
	users, concurrency, rounds int
	pairs, messages, window    int
	senders, procs             int
	settle, maxTime            time.Duration
	pids                       []int
}

// result is the JSON line of a run (see docs/BENCHMARKS.md).
type result struct {
	Server     string         `json:"server"`
	Mode       string         `json:"mode"`
	N          int            `json:"n"`
	Value      float64        `json:"value"`
	Unit       string         `json:"unit"`
	Incomplete bool           `json:"incomplete"`
	Details    map[string]any `json:"details"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var cfg config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "", "server's client port, host:port (STARTTLS)")
	fs.StringVar(&cfg.domain, "domain", "", "XMPP domain of the accounts")
	fs.StringVar(&cfg.mode, "mode", "", "register, idle, login, message or muc")
	fs.StringVar(&cfg.label, "label", "", "server name for the JSON output (\"server\")")
	fs.StringVar(&cfg.password, "password", "bench-password", "password of every account")
	fs.StringVar(&cfg.prefix, "user-prefix", "user", "accounts are PREFIX00000, PREFIX00001, ...")
	fs.StringVar(&cfg.resource, "resource", "load", "resource to bind")
	fs.StringVar(&cfg.mucDomain, "muc-domain", "", "group chat service for --mode muc (default groups.DOMAIN)")
	fs.StringVar(&cfg.room, "room", "bench", "room localpart for --mode muc")
	fs.StringVar(&cfg.roomForm, "room-form", "open", "muc: what the room's creator submits: open (members-only off) or instant (empty form)")
	fs.StringVar(&cfg.tlsName, "tls-server-name", "", "TLS server name (default --domain)")
	fs.BoolVar(&cfg.tlsInsecure, "tls-insecure", false, "accept any server certificate (self-signed)")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object")
	fs.BoolVar(&cfg.warmup, "warmup", true, "login: log every account in once before the timed run (caches the client's SCRAM keys)")
	fs.IntVar(&cfg.users, "users", 100, "register/idle/login: accounts; muc: occupants")
	fs.IntVar(&cfg.concurrency, "concurrency", 50, "parallel connection set-ups (login: parallel workers)")
	fs.IntVar(&cfg.rounds, "rounds", 1, "login: timed logins per account")
	fs.IntVar(&cfg.pairs, "pairs", 10, "message: sender/receiver pairs (accounts 0..2P-1)")
	fs.IntVar(&cfg.messages, "messages", 1000, "message/muc: messages per sender")
	fs.IntVar(&cfg.window, "window", 100, "message/muc: messages a sender may have in flight")
	fs.IntVar(&cfg.senders, "senders", 5, "muc: occupants that send")
	fs.IntVar(&cfg.procs, "procs", 0, "GOMAXPROCS of the client (0: Go's default, all cores); 1 spends less CPU on scheduling")
	fs.DurationVar(&cfg.settle, "settle", 3*time.Second, "idle: wait after each half's last login before reading RSS (value: KiB/session = (RSS with N - RSS with N/2) / (N - N/2))")
	fs.DurationVar(&cfg.maxTime, "max-time", 120*time.Second, "hard bound of the whole run")
	fs.Func("server-pid", "server process to measure (repeatable; RSS and CPU are summed)", func(v string) error {
		p, err := strconv.Atoi(v)
		if err != nil || p <= 0 {
			return errors.New("want a process id")
		}
		cfg.pids = append(cfg.pids, p)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 2
	}
	if cfg.procs > 0 {
		runtime.GOMAXPROCS(cfg.procs)
	}
	res := runMode(&cfg)
	if cfg.json {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		printText(stdout, res)
	}
	if res.Incomplete && res.Value == 0 {
		return 1
	}
	return 0
}

func (c *config) check() error {
	switch {
	case c.addr == "" || c.domain == "":
		return errors.New("--addr and --domain are required")
	case c.users <= 0 || c.concurrency <= 0 || c.rounds <= 0 || c.pairs <= 0 ||
		c.messages <= 0 || c.window <= 0 || c.senders <= 0 || c.procs < 0:
		return errors.New("counts must be positive")
	case c.maxTime <= 0 || c.settle < 0:
		return errors.New("--max-time must be positive")
	}
	switch c.mode {
	case "register", "login", "message":
	case "idle":
		if len(c.pids) == 0 {
			return errors.New("--mode idle needs --server-pid")
		}
	case "muc":
		if c.senders > c.users {
			return errors.New("--senders must not exceed --users")
		}
		if c.roomForm != "open" && c.roomForm != "instant" {
			return errors.New("--room-form must be open or instant")
		}
	default:
		return fmt.Errorf("unknown --mode %q", c.mode)
	}
	if c.mucDomain == "" {
		c.mucDomain = "groups." + c.domain
	}
	if c.tlsName == "" {
		c.tlsName = c.domain
	}
	return nil
}

func printText(w io.Writer, r result) {
	inc := ""
	if r.Incomplete {
		inc = " (INCOMPLETE)"
	}
	fmt.Fprintf(w, "%s %s n=%d: %.1f %s%s\n", r.Server, r.Mode, r.N, r.Value, r.Unit, inc)
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %v\n", k, r.Details[k])
	}
}

// run state shared by the modes.
type bench struct {
	cfg     *config
	cl      *lean.Dialer
	errs    errTracker
	start   time.Time
	work    time.Time // deadline of the measured work
	final   time.Time // hard deadline (closing streams included)
	tlsOnce sync.Once
	tlsVer  string
}

func runMode(cfg *config) result {
	b := &bench{cfg: cfg, start: time.Now()}
	reserve := min(5*time.Second, cfg.maxTime/10)
	b.final = b.start.Add(cfg.maxTime)
	b.work = b.final.Add(-reserve)
	b.cl = &lean.Dialer{
		Addr: cfg.addr, Domain: cfg.domain, Resource: cfg.resource,
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.tlsName, InsecureSkipVerify: cfg.tlsInsecure},
	}
	res := result{Server: cfg.label, Mode: cfg.mode, Details: map[string]any{}}
	switch cfg.mode {
	case "register":
		b.register(&res)
	case "idle":
		b.idle(&res)
	case "login":
		b.login(&res)
	case "message":
		b.message(&res)
	case "muc":
		b.muc(&res)
	}
	b.errs.record(res.Details)
	if b.tlsVer != "" {
		res.Details["tls"] = b.tlsVer
	}
	res.Details["wall_s"] = round3(time.Since(b.start).Seconds())
	if math.IsNaN(res.Value) || math.IsInf(res.Value, 0) {
		res.Value = 0
	}
	res.Value = round3(res.Value)
	return res
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// user returns the localpart of account i.
func (b *bench) user(i int) string { return fmt.Sprintf("%s%05d", b.cfg.prefix, i) }

// noteTLS records the negotiated TLS version once.
func (b *bench) noteTLS(x *lean.Conn) {
	b.tlsOnce.Do(func() {
		if tc, ok := x.NetConn().(*tls.Conn); ok {
			b.tlsVer = tls.VersionName(tc.ConnectionState().Version)
		}
	})
}

// errTracker counts failures by message and keeps the first few.
type errTracker struct {
	mu     sync.Mutex
	n      int
	counts map[string]int
}

func (e *errTracker) add(err error) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.counts == nil {
		e.counts = map[string]int{}
	}
	if _, ok := e.counts[msg]; ok || len(e.counts) < 10 {
		e.counts[msg]++
	}
}

func (e *errTracker) record(d map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d["errors"] = e.n
	if e.n > 0 {
		d["error_samples"] = e.counts
	}
}

// parallel runs fn(0..n-1) on conc workers; workers take no new item after
// deadline. It returns how many calls succeeded and how many were started;
// failures go to errs.
func parallel(n, conc int, deadline time.Time, errs *errTracker, fn func(i int) error) (ok, started int) {
	var next, good atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for {
				if time.Now().After(deadline) {
					return
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs.add(err)
				} else {
					good.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(good.Load()), min(int(next.Load()), n)
}

// closeAll closes every stream (RFC 6120 §4.4) and waits, bounded by
// deadline, for the server to close its side: for connections with a
// reading goroutine until it has ended, otherwise by reading here.
func closeAll(conns []*lean.Conn, readers []*lean.Reader, deadline time.Time) {
	var wg sync.WaitGroup
	for i, x := range conns {
		if x == nil {
			continue
		}
		var r *lean.Reader
		if readers != nil {
			r = readers[i]
		}
		wg.Go(func() {
			x.NetConn().SetDeadline(deadline)
			x.CloseStream()
			if r == nil {
				x.WaitClosed(deadline)
				return
			}
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-r.Done():
			case <-t.C:
			}
			t.Stop()
			x.Abort()
		})
	}
	wg.Wait()
}

// ctxUntil returns a context ending at deadline.
func ctxUntil(d time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), d)
}
