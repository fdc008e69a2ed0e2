package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/ddns/ddnstest"
	"github.com/libdns/cloudflare"
	"github.com/libdns/rfc2136"
	"github.com/miekg/dns"
	"github.com/pion/turn/v3"
)

// DNS provider settings come from --dns-credentials, the environment
// overriding it; secrets never from flags.
func TestDNSProviderSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dns.env")
	os.WriteFile(file, []byte("# Knot at home\nHEARTH_RFC2136_SERVER=192.0.2.53\nHEARTH_RFC2136_KEY_NAME=hearth.\n"+
		"HEARTH_RFC2136_KEY_ALG=hmac-sha512\nHEARTH_RFC2136_SECRET=\"c2VjcmV0LXNlY3JldA==\"\n"), 0o600)
	a := &acmeSetup{dnsProvider: "rfc2136", dnsCredentials: file}
	p, err := a.newProvider()
	if err != nil {
		t.Fatal(err)
	}
	r := p.(*rfc2136.Provider)
	if r.Server != "192.0.2.53:53" || r.KeyName != "hearth." || r.KeyAlg != "hmac-sha512." || r.Key != "c2VjcmV0LXNlY3JldA==" {
		t.Errorf("from the file: %+v", r)
	}
	t.Setenv(envRFC2136Server, "192.0.2.54:5353")
	p, _ = a.newProvider()
	if r := p.(*rfc2136.Provider); r.Server != "192.0.2.54:5353" {
		t.Errorf("the environment does not override the file: %+v", r)
	}

	a = &acmeSetup{dnsProvider: "cloudflare"}
	t.Setenv(envCloudflareToken, "")
	if _, err := a.newProvider(); err == nil || !strings.Contains(err.Error(), envCloudflareToken) {
		t.Errorf("cloudflare without a token: %v", err)
	}
	t.Setenv(envCloudflareToken, "tok")
	if p, err := a.newProvider(); err != nil || p.(*cloudflare.Provider).APIToken != "tok" {
		t.Errorf("cloudflare: %v", err)
	}
	a = &acmeSetup{dnsProvider: "route53"}
	if _, err := a.newProvider(); err == nil {
		t.Error("unknown provider accepted")
	}
}

// freePorts returns n distinct free 127.0.0.1 TCP ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// portFlags sets every listening port of serve to a free one (or off).
func portFlags(p []int) []string {
	return []string{
		"--listen", "127.0.0.1",
		"--c2s-port", strconv.Itoa(p[0]), "--c2s-tls-port", strconv.Itoa(p[1]),
		"--s2s-port", "0", "--http-port", strconv.Itoa(p[2]), "--https-port", strconv.Itoa(p[3]),
		"--turn-port", "0", "--turns-port", "0", "--proxy65-port", "0",
	}
}

// hasFlags skips flags serve does not know (another part may rename one).
func hasFlags(t *testing.T, args []string) []string {
	t.Helper()
	fs, _ := serveFlags(io.Discard)
	var out []string
	for i := 0; i < len(args); i += 2 {
		if fs.Lookup(strings.TrimPrefix(args[i], "--")) != nil {
			out = append(out, args[i], args[i+1])
		}
	}
	return out
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

// hearth serve --acme obtains the certificate from the CA through HTTP-01
// on its own HTTP listener and serves it on c2s and HTTPS without a
// restart.
func TestServeACME(t *testing.T) {
	const domain = "example.test"
	k := ddnstest.StartKnot(t, map[string]string{domain: "@ A 127.0.0.1\n* A 127.0.0.1\n"})
	p := freePorts(t, 4)
	pebble := ddnstest.StartPebble(t, p[2], k.Addr)
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "pebble-api-root.pem")
	if err := os.WriteFile(rootFile, pebble.APIRootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--data", filepath.Join(dir, "data"), "--domain", domain,
		"--acme", "--acme-ca", pebble.Directory, "--acme-ca-root", rootFile, "--acme-challenge", "http-01"},
		hasFlags(t, portFlags(p))...)
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- serve(args, stdout, stderr) }()
	defer func() {
		if t.Failed() {
			t.Logf("serve stderr:\n%s", stderr.String())
		}
	}()

	roots := pebble.IssuerRoots(t)
	dial := func(port int, alpn string) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(port),
			&tls.Config{ServerName: domain, RootCAs: roots, NextProtos: []string{alpn}})
		if err == nil {
			c.Close()
		}
		return err
	}
	var err error
	for i := 0; ; i++ {
		select {
		case code := <-done:
			t.Fatalf("serve returned %d", code)
		default:
		}
		if err = dial(p[1], "xmpp-client"); err == nil {
			break
		}
		if i == 600 {
			t.Fatalf("c2s never served a certificate from the CA: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := dial(p[3], "http/1.1"); err != nil {
		t.Errorf("HTTPS does not serve the CA's certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "acme", "hearth", domain, "cert.pem")); err != nil {
		t.Errorf("certificate not stored under DATA/acme: %v", err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited with %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

// hearth serve --ddns publishes the STUN-discovered address, the SRV records
// and the component names through RFC 2136 (settings from the environment).
func TestServeDDNS(t *testing.T) {
	const domain = "example.test"
	k := ddnstest.StartKnot(t, map[string]string{domain: ""})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stun, err := turn.NewServer(turn.ServerConfig{
		Realm:       domain,
		AuthHandler: func(string, string, net.Addr) ([]byte, bool) { return nil, false },
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
			RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stun.Close()
	t.Setenv(envRFC2136Server, k.Addr)
	t.Setenv(envRFC2136KeyName, k.KeyName)
	t.Setenv(envRFC2136KeyAlg, k.KeyAlg)
	t.Setenv(envRFC2136Secret, k.Secret)
	p := freePorts(t, 4)
	args := append([]string{"--data", t.TempDir(), "--domain", domain,
		"--ddns", "--dns-provider", "rfc2136", "--stun-servers", pc.LocalAddr().String()},
		hasFlags(t, portFlags(p))...)
	stderr := &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- serve(args, io.Discard, stderr) }()
	defer func() {
		if t.Failed() {
			t.Logf("serve stderr:\n%s", stderr.String())
		}
	}()
	for i := 0; ; i++ {
		select {
		case code := <-done:
			t.Fatalf("serve returned %d", code)
		default:
		}
		srv := k.Query(t, "_xmpp-client._tcp."+domain, dns.TypeSRV)
		if a := k.Query(t, domain, dns.TypeA); len(a) == 1 && a[0] == "127.0.0.1" && len(srv) == 1 {
			break
		}
		if i == 300 {
			t.Fatal("the A and SRV records never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := k.Query(t, "_xmpps-client._tcp."+domain, dns.TypeSRV); len(got) != 1 || got[0] != "0 5 "+strconv.Itoa(p[1])+" example.test." {
		t.Errorf("direct TLS SRV = %q", got)
	}
	if strings.Contains(stderr.String(), k.Secret) {
		t.Error("the TSIG secret is in the logs")
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited with %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

// Inconsistent flags are configuration errors before anything listens.
func TestServeACMEConfigErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--acme", "--acme-challenge", "dns-01"}, "needs --dns-provider"},
		{[]string{"--acme", "--acme-challenge", "tls-alpn-01"}, "unknown challenge"},
		{[]string{"--acme", "--acme-challenge", "http-01", "--http-port", "0"}, "--http-port"},
		{[]string{"--ddns"}, "--ddns needs --dns-provider"},
		{[]string{"--ddns", "--dns-provider", "rfc2136"}, "RFC 2136 needs a server"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Setenv(envRFC2136Server, "")
			args := append([]string{"--data", t.TempDir(), "--domain", "example.test"}, hasFlags(t, portFlags(freePorts(t, 4)))...)
			args = append(args, c.args...)
			var stderr bytes.Buffer
			if code := serve(args, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("serve %v = %d, stderr %q; want 1 and %q", c.args, code, stderr.String(), c.want)
			}
		})
	}
}
