// Package ddnstest runs a real authoritative DNS server for tests: Knot DNS
// (Debian packages knot, knot-dnsutils) as a child process on a 127.0.0.1
// high port, with temporary zones that accept RFC 2136 updates and zone
// transfers signed with a TSIG key, and a miekg/dns query helper.
package ddnstest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Require returns the path of the program name, looked up in PATH and
// /usr/sbin. When it is missing the test is skipped, or fails when
// HEARTH_INTEROP is set (the Debian packages are then mandatory).
func Require(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("HEARTH_INTEROP") != "" {
		t.Fatalf("%s is not installed (scripts/install-deps.sh installs it)", name)
	}
	t.Skipf("%s is not installed; set HEARTH_INTEROP=1 to make this a failure", name)
	return ""
}

// Knot is a running knotd.
type Knot struct {
	// Addr is "127.0.0.1:PORT", UDP and TCP.
	Addr string
	// KeyName, KeyAlg and Secret are the TSIG key (RFC 8945) that may
	// update and transfer every zone; Secret is base64.
	KeyName, KeyAlg, Secret string

	logs *lockedBuffer
}

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

// Logs returns what knotd wrote so far.
func (k *Knot) Logs() string { return k.logs.String() }

// StartKnot starts knotd serving zones: zone name → zone-file lines
// relative to the zone ("www A 192.0.2.1"). Each zone gets an SOA, NS
// ns1 and "ns1 A 127.0.0.1" in front of its lines. knotd is stopped when
// the test ends. It fails the test if knotd does not answer within 10 s.
func StartKnot(t testing.TB, zones map[string]string) *Knot {
	t.Helper()
	bin := Require(t, "knotd")
	dir := t.TempDir()
	for _, sub := range []string{"run", "db", "zones"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	k := &Knot{KeyName: "hearth-test.", KeyAlg: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString(secret), logs: &lockedBuffer{}}
	k.Addr = freePort(t)
	host, port, _ := net.SplitHostPort(k.Addr)

	names := make([]string, 0, len(zones))
	for z := range zones {
		names = append(names, z)
	}
	sort.Strings(names)
	var conf strings.Builder
	fmt.Fprintf(&conf, `server:
    rundir: "%s"
    listen: %s@%s
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "%s"
key:
  - id: %s
    algorithm: %s
    secret: %s
acl:
  - id: hearth_acl
    key: %s
    action: [update, transfer]
template:
  - id: default
    storage: "%s"
    file: "%%s.zone"
zone:
`, filepath.Join(dir, "run"), host, port, filepath.Join(dir, "db"), k.KeyName, k.KeyAlg, k.Secret, k.KeyName, filepath.Join(dir, "zones"))
	for _, z := range names {
		fmt.Fprintf(&conf, "  - domain: %s\n    acl: hearth_acl\n", z)
		zf := fmt.Sprintf("$ORIGIN %s.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n%s\n", z, zones[z])
		if err := os.WriteFile(filepath.Join(dir, "zones", z+".zone"), []byte(zf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	confPath := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stdout, cmd.Stderr = k.logs, k.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("knotd logs:\n%s", k.Logs())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, z := range names {
		for {
			if len(k.query(z, dns.TypeSOA)) > 0 {
				break
			}
			select {
			case <-done:
				t.Fatalf("knotd exited:\n%s", k.Logs())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("knotd does not serve %s:\n%s", z, k.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return k
}

// freePort returns a 127.0.0.1 port free for both TCP and UDP just now.
func freePort(t testing.TB) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		pc, err := net.ListenPacket("udp4", addr)
		l.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return addr
	}
	t.Fatal("no free port")
	return ""
}

// Query asks the server for name's records of type qtype over UDP and
// returns their data in zone-file form ("192.0.2.1", "0 5 5222
// example.test."), sorted. It fails the test on a network error or an
// error response other than NXDOMAIN.
func (k *Knot) Query(t testing.TB, name string, qtype uint16) []string {
	t.Helper()
	out := k.query(name, qtype)
	if out == nil {
		t.Fatalf("query %s %s failed", name, dns.TypeToString[qtype])
	}
	return out[1:]
}

// query returns nil on failure, else a slice whose first element is the
// response code.
func (k *Knot) query(name string, qtype uint16) []string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, k.Addr)
	if err != nil || (r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError) {
		return nil
	}
	out := []string{dns.RcodeToString[r.Rcode]}
	var data []string
	for _, rr := range r.Answer {
		if rr.Header().Rrtype != qtype {
			continue
		}
		data = append(data, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	sort.Strings(data)
	return append(out, data...)
}
