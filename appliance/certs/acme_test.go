package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/certs"
	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"github.com/hearthxmpp/hearth/ddns"
	"github.com/hearthxmpp/hearth/ddns/ddnstest"
	"github.com/miekg/dns"
	"github.com/xdg-go/scram"
)

const domain = "example.test"

var names = []string{domain, "groups." + domain, "upload." + domain}

// zone has the names on 127.0.0.1, where pebble's HTTP-01 validation goes.
const zone = "@ A 127.0.0.1\ngroups A 127.0.0.1\nupload A 127.0.0.1\n"

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	b := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hearth logs:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func fallback(t *testing.T, dir string) *tls.Certificate {
	t.Helper()
	c, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(dir, "tls"), domain)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// served returns the leaf GetCertificate presents for domain.
func served(t *testing.T, m *certs.Manager) *x509.Certificate {
	t.Helper()
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: domain})
	if err != nil || c == nil || c.Leaf == nil {
		t.Fatalf("GetCertificate = %v, %v", c, err)
	}
	return c.Leaf
}

// verify checks that leaf chains to pebble's root and covers every name.
func verify(t *testing.T, c *tls.Certificate, roots *x509.CertPool) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(ic)
	}
	for _, n := range names {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("certificate for %s: %v", n, err)
		}
	}
}

// DNS-01 through the RFC 2136 provider to Knot, which pebble queries; the
// stored certificate is served again after a restart without a new order.
func TestACMEDNS01(t *testing.T) {
	k := ddnstest.StartKnot(t, map[string]string{domain: zone})
	p := ddnstest.StartPebble(t, ddnstest.FreeTCPPort(t), k.Addr)
	prov, err := ddns.NewRFC2136(k.Addr, k.KeyName, k.KeyAlg, k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fb := fallback(t, dir)
	log, logs := testLogger(t)
	cfg := certs.Config{
		Names: names, DataDir: dir, CA: p.Directory, CARoots: p.APIRoots, Email: "admin@" + domain,
		Challenge: certs.ChallengeDNS01, DNSProvider: prov, DNSResolvers: []string{k.Addr},
		Fallback: fb, Logger: log,
	}
	m, err := certs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if leaf := served(t, m); !leaf.Equal(fb.Leaf) || !m.Status().SelfSigned {
		t.Fatal("before the first order, the self-signed certificate must be served")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := m.Obtain(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ := m.GetCertificate(&tls.ClientHelloInfo{ServerName: domain})
	verify(t, c, p.IssuerRoots(t))
	s := m.Status()
	if s.SelfSigned || !strings.Contains(s.Issuer, "Pebble") || s.LastError != "" || s.LastSuccess.IsZero() ||
		!s.NotAfter.Equal(c.Leaf.NotAfter) || !s.RenewAt.Before(s.NotAfter) || !slices.Equal(s.Names, names) {
		t.Errorf("status after issuance: %+v", s)
	}
	// The challenge records are gone again.
	if txt := k.Query(t, "_acme-challenge."+domain, dns.TypeTXT); len(txt) != 0 {
		t.Errorf("challenge TXT left behind: %q", txt)
	}
	if !strings.Contains(logs.String(), "certificate obtained") {
		t.Error("issuance not logged")
	}

	// A restart serves the stored certificate at once.
	m2, err := certs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if !served(t, m2).Equal(c.Leaf) {
		t.Error("after a restart the stored certificate is not served")
	}
	if m2.Status().SelfSigned {
		t.Error("status says self-signed after a restart")
	}
}

// HTTP-01 answered by the handler on Hearth's plain HTTP listener.
func TestACMEHTTP01(t *testing.T) {
	k := ddnstest.StartKnot(t, map[string]string{domain: zone})
	httpPort := ddnstest.FreeTCPPort(t)
	httpAddr := "127.0.0.1:" + strconv.Itoa(httpPort)
	p := ddnstest.StartPebble(t, httpPort, k.Addr)
	dir := t.TempDir()
	log, _ := testLogger(t)
	m, err := certs.New(certs.Config{
		Names: names, DataDir: dir, CA: p.Directory, CARoots: p.APIRoots,
		Challenge: certs.ChallengeHTTP01, HTTPListen: httpAddr, Fallback: fallback(t, dir), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	web := httpd.New(log)
	var hits atomic.Int32
	h := m.HTTPHandler()
	web.Handle("/.well-known/acme-challenge/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	if _, err := web.Listen(httpAddr); err != nil {
		t.Fatal(err)
	}
	defer web.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := m.Obtain(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ := m.GetCertificate(&tls.ClientHelloInfo{ServerName: domain})
	verify(t, c, p.IssuerRoots(t))
	if n := hits.Load(); n < int32(len(names)) {
		t.Errorf("the HTTP-01 handler answered %d requests, want one per name (%d)", n, len(names))
	}
	// Anything else under the challenge path is 404.
	resp, err := http.Get("http://" + httpAddr + "/.well-known/acme-challenge/unknown-token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown token: HTTP %d", resp.StatusCode)
	}
}

// A failed order keeps the fallback certificate and reports the CA's reason.
func TestACMEFailureStatus(t *testing.T) {
	// Knot has no A record for the names: HTTP-01 validation cannot connect.
	k := ddnstest.StartKnot(t, map[string]string{domain: ""})
	httpPort := ddnstest.FreeTCPPort(t)
	p := ddnstest.StartPebble(t, httpPort, k.Addr)
	dir := t.TempDir()
	fb := fallback(t, dir)
	log, _ := testLogger(t)
	m, err := certs.New(certs.Config{
		Names: names[:1], DataDir: dir, CA: p.Directory, CARoots: p.APIRoots,
		Challenge: certs.ChallengeHTTP01, HTTPListen: "127.0.0.1:" + strconv.Itoa(httpPort), Fallback: fb, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := m.Obtain(ctx); err == nil {
		t.Fatal("Obtain succeeded without a way to validate")
	}
	s := m.Status()
	if !s.SelfSigned || s.LastError == "" || s.LastAttempt.IsZero() || !s.LastSuccess.IsZero() {
		t.Errorf("status after a failure: %+v", s)
	}
	if !served(t, m).Equal(fb.Leaf) {
		t.Error("the fallback certificate is no longer served after a failure")
	}
}

// shiftClock is the Manager's clock: it runs ahead to just past the renewal
// time while the first ACME certificate is served, so Run renews it, and is
// the real time otherwise.
type shiftClock struct {
	m     atomic.Pointer[certs.Manager]
	first atomic.Pointer[x509.Certificate]
	ahead atomic.Bool
}

func (c *shiftClock) Now() time.Time {
	m := c.m.Load()
	first := c.first.Load()
	if m == nil || first == nil || !c.ahead.Load() {
		return time.Now()
	}
	if cur, _ := m.GetCertificate(&tls.ClientHelloInfo{}); cur.Leaf.Equal(first) {
		// Past the default renewal point, a third of the lifetime left.
		life := first.NotAfter.Sub(first.NotBefore)
		return first.NotAfter.Add(-life / 3).Add(time.Minute)
	}
	return time.Now()
}

// Run obtains the first certificate while c2s serves the self-signed one,
// then renews it when due; a client connected before keeps its session, a
// new connection sees the new certificate, and SCRAM -PLUS with
// tls-server-end-point (TLS 1.2) binds to the certificate actually served,
// on direct TLS and STARTTLS.
func TestACMERenewalHotSwap(t *testing.T) {
	k := ddnstest.StartKnot(t, map[string]string{domain: zone})
	httpPort := ddnstest.FreeTCPPort(t)
	httpAddr := "127.0.0.1:" + strconv.Itoa(httpPort)
	p := ddnstest.StartPebble(t, httpPort, k.Addr)
	dir := t.TempDir()
	fb := fallback(t, dir)
	log, _ := testLogger(t)
	clock := &shiftClock{}
	m, err := certs.New(certs.Config{
		Names: names, DataDir: dir, CA: p.Directory, CARoots: p.APIRoots,
		Challenge: certs.ChallengeHTTP01, HTTPListen: httpAddr,
		Fallback: fb, Logger: log, Now: clock.Now,
		CheckInterval: 20 * time.Millisecond, RetryMin: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	clock.m.Store(m)
	web := httpd.New(log)
	web.Handle("/.well-known/acme-challenge/", m.HTTPHandler())
	if _, err := web.Listen(httpAddr); err != nil {
		t.Fatal(err)
	}
	defer web.Shutdown(context.Background())

	st, err := store.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := account.Create(ctx, st, "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Domain: domain, Store: st, GetCertificate: m.GetCertificate, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, so that it runs after the clients' (registered later) closed them.
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	tlsAddr, err := srv.ListenC2S(ctx, "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	startTLSAddr, err := srv.ListenC2S(ctx, "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}

	// Before ACME: the self-signed certificate, with working channel binding.
	c0 := dialDirect(t, tlsAddr.String(), nil)
	if !peerLeaf(c0).Equal(fb.Leaf) {
		t.Fatal("c2s does not serve the fallback certificate before the first order")
	}
	loginEndpoint(t, c0)

	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(runCtx) }()
	defer func() { stopRun(); <-runDone }()
	first := waitFor(t, "the first certificate", func() *x509.Certificate {
		if l := served(t, m); !l.Equal(fb.Leaf) {
			return l
		}
		return nil
	})
	roots := p.IssuerRoots(t)

	// Client A connects with the first ACME certificate, verified against
	// pebble's root.
	a := dialDirect(t, tlsAddr.String(), roots)
	if !peerLeaf(a).Equal(first) {
		t.Fatal("client A did not get the first ACME certificate")
	}
	loginEndpoint(t, a)
	// Client D completes its TLS handshake now but authenticates only after
	// the swap: its channel binding is still the first certificate's.
	d := dialDirect(t, tlsAddr.String(), roots)

	// Renewal comes due; Run replaces the certificate.
	clock.first.Store(first)
	clock.ahead.Store(true)
	second := waitFor(t, "the renewed certificate", func() *x509.Certificate {
		if l := served(t, m); !l.Equal(first) {
			return l
		}
		return nil
	})
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("renewal kept the serial number")
	}

	// A's session goes on over its TLS session with the old certificate.
	if res := a.IQ("get", "", "<query xmlns='jabber:iq:roster'/>"); res.Get("type") != "result" {
		t.Fatalf("client A after the swap: %s", res)
	}
	if !peerLeaf(a).Equal(first) {
		t.Error("client A's connection changed certificate")
	}
	if !peerLeaf(d).Equal(first) {
		t.Fatal("client D did not get the first certificate")
	}
	loginEndpoint(t, d)
	// New connections get the new certificate, on both ports, and -PLUS
	// binds to it.
	b := dialDirect(t, tlsAddr.String(), roots)
	if !peerLeaf(b).Equal(second) {
		t.Fatal("a new direct TLS connection did not get the renewed certificate")
	}
	loginEndpoint(t, b)
	c := xmpptest.Dial(t, startTLSAddr.String(), domain)
	c.OpenStream()
	feats := c.StartTLS(&tls.Config{ServerName: domain, RootCAs: roots, MaxVersion: tls.VersionTLS12})
	if !peerLeaf(c).Equal(second) {
		t.Fatal("a new STARTTLS connection did not get the renewed certificate")
	}
	authEndpoint(t, c, feats)
	if s := m.Status(); s.LastError != "" || s.NotAfter != second.NotAfter {
		t.Errorf("status after renewal: %+v", s)
	}
}

func waitFor(t *testing.T, what string, f func() *x509.Certificate) *x509.Certificate {
	t.Helper()
	for i := 0; i < 1200; i++ {
		if c := f(); c != nil {
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
	return nil
}

// dialDirect connects with direct TLS 1.2 (so -PLUS needs
// tls-server-end-point); roots nil skips verification.
func dialDirect(t *testing.T, addr string, roots *x509.CertPool) *xmpptest.Client {
	t.Helper()
	return xmpptest.DialTLS(t, addr, domain, &tls.Config{
		ServerName: domain, RootCAs: roots, InsecureSkipVerify: roots == nil,
		MaxVersion: tls.VersionTLS12, NextProtos: []string{"xmpp-client"},
	})
}

func peerLeaf(c *xmpptest.Client) *x509.Certificate {
	return c.Conn().(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// loginEndpoint opens the stream and authenticates with -PLUS.
func loginEndpoint(t *testing.T, c *xmpptest.Client) {
	t.Helper()
	authEndpoint(t, c, c.OpenStream())
	c.OpenStream()
	c.Bind("")
}

// authEndpoint runs SCRAM-SHA-256-PLUS with tls-server-end-point channel
// binding (RFC 5929 §4: a hash of the certificate this connection got),
// which the server must offer after TLS 1.2.
func authEndpoint(t *testing.T, c *xmpptest.Client, features *xmlel.Element) {
	t.Helper()
	if !strings.Contains(features.String(), "SCRAM-SHA-256-PLUS") {
		t.Fatalf("no -PLUS mechanism offered: %s", features)
	}
	cs := c.Conn().(*tls.Conn).ConnectionState()
	cb, err := scram.NewTLSServerEndpointBinding(&cs)
	if err != nil {
		t.Fatal(err)
	}
	client, err := scram.SHA256.NewClient("alice", "pw-alice", "")
	if err != nil {
		t.Fatal(err)
	}
	conv := client.NewConversationWithChannelBinding(cb)
	first, _ := conv.Step("")
	c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>%s</auth>", base64.StdEncoding.EncodeToString([]byte(first)))
	isSASL := func(e *xmlel.Element) bool { return e.Name.Space == "urn:ietf:params:xml:ns:xmpp-sasl" }
	el := c.Expect(isSASL)
	if el.Name.Local != "challenge" {
		t.Fatalf("SCRAM-PLUS: %s", el)
	}
	ch, _ := base64.StdEncoding.DecodeString(el.Text())
	final, err := conv.Step(string(ch))
	if err != nil {
		t.Fatal(err)
	}
	c.Send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", base64.StdEncoding.EncodeToString([]byte(final)))
	if el = c.Expect(isSASL); el.Name.Local != "success" {
		t.Fatalf("SCRAM-PLUS with tls-server-end-point failed: %s", el)
	}
}
