package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdg-go/scram"
	"mellium.im/xmpp"

	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
)

const (
	domain   = "example.org"
	password = "correct horse battery staple"
)

// memStore is an in-memory CredentialSource.
type memStore struct {
	mu    sync.Mutex
	creds map[string][]auth.Credential
	err   error // returned for every lookup if set
}

func newStore(t *testing.T, users map[string]string) *memStore {
	t.Helper()
	s := &memStore{creds: make(map[string][]auth.Credential)}
	for u, p := range users {
		c, err := auth.DeriveCredentials(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		s.creds[u] = c
	}
	return s
}

func (s *memStore) Credential(_ context.Context, username, hash string) (auth.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return auth.Credential{}, s.err
	}
	for _, c := range s.creds[username] {
		if c.Hash == hash {
			return c, nil
		}
	}
	return auth.Credential{}, fmt.Errorf("user %q hash %s: %w", username, hash, auth.ErrUnknownUser)
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newCert(t *testing.T, curve elliptic.Curve) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: domain},
		DNSNames:              []string{domain},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

type result struct {
	err  error
	user string // from OnSuccess
}

// resultBox delivers each connection's result, keyed by the client address.
type resultBox struct {
	mu sync.Mutex
	m  map[string]chan result
}

func (b *resultBox) ch(addr string) chan result {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[string]chan result)
	}
	c, ok := b.m[addr]
	if !ok {
		c = make(chan result, 1)
		b.m[addr] = c
	}
	return c
}

type testServer struct {
	addr    string
	pool    *x509.CertPool
	results resultBox
	logs    *syncBuffer
}

type serverConfig struct {
	store      *memStore
	curve      elliptic.Curve
	noCertOpt  bool // do not pass Options.Certificate
	noTLSState bool // do not bind Options.TLSState
	throttle   *auth.Throttle
}

// startServer accepts connections and runs a mellium server session with
// StartTLS and the SASL feature on each.
func startServer(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	if cfg.curve == nil {
		cfg.curve = elliptic.P256()
	}
	cert, pool := newCert(t, cfg.curve)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), pool: pool, logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		if os.Getenv("AUTH_TEST_LOGS") != "" {
			t.Log(ts.logs.String())
		}
		if strings.Contains(ts.logs.String(), password) || strings.Contains(ts.logs.String(), "wrong-password") {
			t.Errorf("password found in logs:\n%s", ts.logs.String())
		}
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
				defer ccancel()
				var user string
				opts := auth.Options{
					Source:    cfg.store,
					Domain:    domain,
					Throttle:  cfg.throttle,
					RemoteIP:  conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(),
					OnSuccess: func(u string) { user = u },
					Logger:    logger,
				}
				if !cfg.noCertOpt {
					opts.Certificate = &cert
				}
				_, err := xmpp.ReceiveSession(cctx, conn, 0, xmpp.NewNegotiator(func(s *xmpp.Session, _ *xmpp.StreamConfig) xmpp.StreamConfig {
					o := opts
					if s != nil && !cfg.noTLSState {
						o.TLSState = s.ConnectionState
					}
					return xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.StartTLS(tlsCfg), auth.Feature(o)}}
				}))
				ts.results.ch(conn.RemoteAddr().String()) <- result{err: err, user: user}
			}()
		}
	}()
	return ts
}

func (ts *testServer) result(t *testing.T, c *client) result {
	t.Helper()
	select {
	case r := <-ts.results.ch(c.conn.LocalAddr().String()):
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("timeout waiting for server")
	}
	return result{}
}

type features struct {
	StartTLS   *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechanisms *struct {
		List []string `xml:"mechanism"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms"`
	ChannelBinding *struct {
		Types []struct {
			Type string `xml:"type,attr"`
		} `xml:"channel-binding"`
	} `xml:"urn:xmpp:sasl-cb:0 sasl-channel-binding"`
}

func (f features) mechanisms() []string {
	if f.Mechanisms == nil {
		return nil
	}
	return f.Mechanisms.List
}

func (f features) bindings() []string {
	if f.ChannelBinding == nil {
		return nil
	}
	var out []string
	for _, t := range f.ChannelBinding.Types {
		out = append(out, t.Type)
	}
	return out
}

type client struct {
	t        *testing.T
	conn     net.Conn
	d        *xml.Decoder
	pre      features // before TLS
	features features // after TLS
}

// dial connects, negotiates StartTLS with at most TLS version maxVer and
// reads the post-TLS feature list.
func (ts *testServer) dial(t *testing.T, maxVer uint16) *client {
	t.Helper()
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn, d: xml.NewDecoder(conn)}
	c.pre = c.open()
	if c.pre.StartTLS == nil {
		t.Fatal("no <starttls/> offered")
	}
	c.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	start := c.nextStart()
	if start.Name.Local != "proceed" {
		t.Fatalf("expected <proceed/>, got %v", start.Name)
	}
	if err := c.d.Skip(); err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: ts.pool, ServerName: domain, MaxVersion: maxVer})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn = tc
	c.d = xml.NewDecoder(tc)
	c.features = c.open()
	return c
}

func (c *client) write(format string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format, args...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) nextStart() xml.StartElement {
	c.t.Helper()
	for {
		tok, err := c.d.Token()
		if err != nil {
			c.t.Fatalf("reading: %v", err)
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s
		}
	}
}

// open sends a stream header and returns the features the server lists.
func (c *client) open() features {
	c.t.Helper()
	c.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>`, domain)
	if s := c.nextStart(); s.Name.Local != "stream" {
		c.t.Fatalf("expected stream header, got %v", s.Name)
	}
	s := c.nextStart()
	if s.Name.Local != "features" {
		c.t.Fatalf("expected features, got %v", s.Name)
	}
	var f features
	if err := c.d.DecodeElement(&f, &s); err != nil {
		c.t.Fatal(err)
	}
	return f
}

type reply struct {
	kind string // challenge, success, failure
	data []byte
	cond string // failure condition
}

func (c *client) read() reply {
	c.t.Helper()
	s := c.nextStart()
	var v struct {
		Text  string `xml:",chardata"`
		Inner []struct {
			XMLName xml.Name
		} `xml:",any"`
	}
	if err := c.d.DecodeElement(&v, &s); err != nil {
		c.t.Fatal(err)
	}
	if s.Name.Space != auth.NSSASL {
		c.t.Fatalf("unexpected element %v", s.Name)
	}
	r := reply{kind: s.Name.Local}
	if r.kind == "failure" && len(v.Inner) > 0 {
		r.cond = v.Inner[0].XMLName.Local
	}
	if v.Text != "" && v.Text != "=" {
		var err error
		if r.data, err = base64.StdEncoding.DecodeString(v.Text); err != nil {
			c.t.Fatal(err)
		}
	}
	return r
}

func (c *client) auth(mech string, payload []byte) {
	c.t.Helper()
	c.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>", mech, base64.StdEncoding.EncodeToString(payload))
}

// scramAuth runs one SCRAM exchange; it returns "success" or the failure
// condition. mk creates the conversation (nil means no channel binding).
func (c *client) scramAuth(mech string, user, pass, authz string, mk func(*scram.Client) *scram.ClientConversation) string {
	c.t.Helper()
	gen := scram.SHA256
	switch {
	case strings.HasPrefix(mech, "SCRAM-SHA-1"):
		gen = scram.SHA1
	case strings.HasPrefix(mech, "SCRAM-SHA-512"):
		gen = scram.SHA512
	}
	cl, err := gen.NewClient(user, pass, authz)
	if err != nil {
		c.t.Fatal(err)
	}
	conv := cl.NewConversation()
	if mk != nil {
		conv = mk(cl)
	}
	first, err := conv.Step("")
	if err != nil {
		c.t.Fatal(err)
	}
	c.auth(mech, []byte(first))
	r := c.read()
	if r.kind == "failure" {
		return r.cond
	}
	if r.kind != "challenge" {
		c.t.Fatalf("expected challenge, got %s", r.kind)
	}
	final, err := conv.Step(string(r.data))
	if err != nil {
		c.t.Fatal(err)
	}
	c.write("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", base64.StdEncoding.EncodeToString([]byte(final)))
	r = c.read()
	if r.kind == "failure" {
		return r.cond
	}
	if r.kind != "success" {
		c.t.Fatalf("expected success, got %s", r.kind)
	}
	if _, err := conv.Step(string(r.data)); err != nil || !conv.Valid() {
		c.t.Fatalf("server signature not valid: %v", err)
	}
	return "success"
}

func (c *client) plainAuth(authz, user, pass string) string {
	c.t.Helper()
	c.auth("PLAIN", []byte(authz+"\x00"+user+"\x00"+pass))
	r := c.read()
	if r.kind == "failure" {
		return r.cond
	}
	if r.kind != "success" {
		c.t.Fatalf("expected success, got %s", r.kind)
	}
	return "success"
}

// restart checks that the server restarts the stream after <success/>.
func (c *client) restart() {
	c.t.Helper()
	f := c.open()
	if f.Mechanisms != nil || f.StartTLS != nil {
		c.t.Fatalf("features after auth still list SASL/StartTLS: %+v", f)
	}
}

func expectSuccess(t *testing.T, ts *testServer, c *client, got, wantUser string) {
	t.Helper()
	if got != "success" {
		t.Fatalf("got %q, want success", got)
	}
	c.restart()
	c.conn.Close()
	r := ts.result(t, c)
	if r.user != wantUser {
		t.Fatalf("OnSuccess user = %q, want %q", r.user, wantUser)
	}
}

func defaultStore(t *testing.T) *memStore {
	return newStore(t, map[string]string{"alice": password, "bob": "bobs password"})
}

var allMechs = []string{
	"SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
	"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN",
}

func TestAdvertisement(t *testing.T) {
	tests := []struct {
		name     string
		cfg      serverConfig
		maxVer   uint16
		mechs    []string
		bindings []string
	}{
		{"TLS13", serverConfig{}, tls.VersionTLS13, allMechs, []string{"tls-exporter", "tls-server-end-point"}},
		{"TLS12", serverConfig{}, tls.VersionTLS12, allMechs, []string{"tls-server-end-point"}},
		{"TLS13NoCert", serverConfig{noCertOpt: true}, tls.VersionTLS13, allMechs, []string{"tls-exporter"}},
		{"TLS12NoCert", serverConfig{noCertOpt: true}, tls.VersionTLS12, allMechs[3:], nil},
		{"NoTLSState", serverConfig{noTLSState: true}, tls.VersionTLS13, allMechs[3:], nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.store = defaultStore(t)
			ts := startServer(t, tc.cfg)
			c := ts.dial(t, tc.maxVer)
			if m := c.pre.mechanisms(); m != nil || c.pre.ChannelBinding != nil {
				t.Errorf("SASL offered before TLS: %v", m)
			}
			if got := c.features.mechanisms(); !slices.Equal(got, tc.mechs) {
				t.Errorf("mechanisms = %v, want %v", got, tc.mechs)
			}
			if got := c.features.bindings(); !slices.Equal(got, tc.bindings) {
				t.Errorf("channel bindings = %v, want %v", got, tc.bindings)
			}
			if (c.features.ChannelBinding != nil) != (tc.bindings != nil) {
				t.Errorf("XEP-0440 element present = %v", c.features.ChannelBinding != nil)
			}
		})
	}
}

func TestSCRAM(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	for _, mech := range []string{"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c := ts.dial(t, tls.VersionTLS13)
			expectSuccess(t, ts, c, c.scramAuth(mech, "alice", password, "", nil), "alice")
		})
	}
}

func TestSCRAMUsernameNormalisedAndAuthzid(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	c := ts.dial(t, tls.VersionTLS13)
	expectSuccess(t, ts, c, c.scramAuth("SCRAM-SHA-256", "ALICE", password, "Alice@Example.org", nil), "alice")

	c = ts.dial(t, tls.VersionTLS13)
	if got := c.scramAuth("SCRAM-SHA-256", "alice", password, "bob@"+domain, nil); got != "invalid-authzid" {
		t.Fatalf("authzid for other user: got %q", got)
	}
}

func exporterBinding(t *testing.T, c *client) scram.ChannelBinding {
	t.Helper()
	cs := c.conn.(*tls.Conn).ConnectionState()
	cb, err := scram.NewTLSExporterBinding(&cs)
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

func endpointBinding(t *testing.T, c *client) scram.ChannelBinding {
	t.Helper()
	cs := c.conn.(*tls.Conn).ConnectionState()
	cb, err := scram.NewTLSServerEndpointBinding(&cs)
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

func withBinding(cb scram.ChannelBinding) func(*scram.Client) *scram.ClientConversation {
	return func(cl *scram.Client) *scram.ClientConversation { return cl.NewConversationWithChannelBinding(cb) }
}

func TestSCRAMPlus(t *testing.T) {
	tests := []struct {
		name    string
		curve   elliptic.Curve
		maxVer  uint16
		binding func(*testing.T, *client) scram.ChannelBinding
	}{
		{"tls-exporter/TLS13", nil, tls.VersionTLS13, exporterBinding},
		{"tls-server-end-point/TLS12", nil, tls.VersionTLS12, endpointBinding},
		{"tls-server-end-point/TLS13", nil, tls.VersionTLS13, endpointBinding},
		{"tls-server-end-point/TLS12/P384", elliptic.P384(), tls.VersionTLS12, endpointBinding},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, serverConfig{store: defaultStore(t), curve: tc.curve})
			for _, mech := range []string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"} {
				t.Run(mech, func(t *testing.T) {
					c := ts.dial(t, tc.maxVer)
					cb := tc.binding(t, c)
					expectSuccess(t, ts, c, c.scramAuth(mech, "alice", password, "", withBinding(cb)), "alice")
				})
			}
		})
	}
}

func TestSCRAMPlusBadBinding(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	tests := []struct {
		name   string
		maxVer uint16
		cb     func(*testing.T, *client) scram.ChannelBinding
		want   string
	}{
		{"wrong exporter data", tls.VersionTLS13, func(*testing.T, *client) scram.ChannelBinding {
			return scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: random}
		}, "not-authorized"},
		{"wrong end-point data", tls.VersionTLS12, func(*testing.T, *client) scram.ChannelBinding {
			return scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: random}
		}, "not-authorized"},
		{"tls-exporter not offered under TLS 1.2", tls.VersionTLS12, func(*testing.T, *client) scram.ChannelBinding {
			return scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: random}
		}, "not-authorized"},
		{"tls-unique not offered", tls.VersionTLS12, func(*testing.T, *client) scram.ChannelBinding {
			return scram.NewTLSUniqueBinding(random)
		}, "not-authorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t, tc.maxVer)
			if got := c.scramAuth("SCRAM-SHA-256-PLUS", "alice", password, "", withBinding(tc.cb(t, c))); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSCRAMDowngrade(t *testing.T) {
	advertising := func(cl *scram.Client) *scram.ClientConversation { return cl.NewConversationAdvertisingChannelBinding() }
	t.Run("PLUS advertised", func(t *testing.T) {
		ts := startServer(t, serverConfig{store: defaultStore(t)})
		c := ts.dial(t, tls.VersionTLS13)
		if got := c.scramAuth("SCRAM-SHA-256", "alice", password, "", advertising); got != "not-authorized" {
			t.Fatalf("gs2 flag y with -PLUS advertised: got %q", got)
		}
	})
	t.Run("PLUS not advertised", func(t *testing.T) {
		ts := startServer(t, serverConfig{store: defaultStore(t), noCertOpt: true})
		c := ts.dial(t, tls.VersionTLS12)
		expectSuccess(t, ts, c, c.scramAuth("SCRAM-SHA-256", "alice", password, "", advertising), "alice")
	})
	t.Run("PLUS mechanism without binding", func(t *testing.T) {
		ts := startServer(t, serverConfig{store: defaultStore(t)})
		c := ts.dial(t, tls.VersionTLS13)
		if got := c.scramAuth("SCRAM-SHA-256-PLUS", "alice", password, "", nil); got != "malformed-request" {
			t.Fatalf("got %q", got)
		}
	})
}

func TestWrongPasswordAndUnknownUser(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	for _, tc := range []struct{ name, user, pass string }{
		{"wrong password", "alice", "wrong-password"},
		{"unknown user", "mallory", "wrong-password"},
		{"invalid username", "a@b", "wrong-password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1"} {
				c := ts.dial(t, tls.VersionTLS13)
				if got := c.scramAuth(mech, tc.user, tc.pass, "", nil); got != "not-authorized" {
					t.Fatalf("%s: got %q", mech, got)
				}
			}
			c := ts.dial(t, tls.VersionTLS13)
			if got := c.plainAuth("", tc.user, tc.pass); got != "not-authorized" {
				t.Fatalf("PLAIN: got %q", got)
			}
		})
	}
}

// serverFirst returns the salt and iteration count the server sends for user.
func serverFirst(t *testing.T, ts *testServer, user string) string {
	t.Helper()
	c := ts.dial(t, tls.VersionTLS13)
	c.auth("SCRAM-SHA-256", []byte("n,,n="+user+",r=abcdefgh"))
	r := c.read()
	if r.kind != "challenge" {
		t.Fatalf("got %s %s", r.kind, r.cond)
	}
	_, rest, _ := strings.Cut(string(r.data), ",") // drop the nonce
	return rest
}

func TestUnknownUserLooksKnown(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	a, b := serverFirst(t, ts, "mallory"), serverFirst(t, ts, "mallory")
	if a != b {
		t.Errorf("unknown user gets varying salt: %q vs %q", a, b)
	}
	known := serverFirst(t, ts, "alice")
	if len(a) != len(known) || !strings.HasSuffix(a, ",i=4096") || !strings.HasSuffix(known, ",i=4096") {
		t.Errorf("unknown %q and known %q look different", a, known)
	}
}

func TestPLAIN(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	t.Run("good", func(t *testing.T) {
		c := ts.dial(t, tls.VersionTLS13)
		expectSuccess(t, ts, c, c.plainAuth("", "Alice", password), "alice")
	})
	t.Run("good with authzid", func(t *testing.T) {
		c := ts.dial(t, tls.VersionTLS13)
		expectSuccess(t, ts, c, c.plainAuth("alice@"+domain, "alice", password), "alice")
	})
	t.Run("bad", func(t *testing.T) {
		c := ts.dial(t, tls.VersionTLS12)
		if got := c.plainAuth("", "alice", "wrong-password"); got != "not-authorized" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("other authzid", func(t *testing.T) {
		c := ts.dial(t, tls.VersionTLS12)
		if got := c.plainAuth("bob@"+domain, "alice", password); got != "invalid-authzid" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("no initial response", func(t *testing.T) {
		c := ts.dial(t, tls.VersionTLS13)
		c.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>")
		if r := c.read(); r.kind != "challenge" || len(r.data) != 0 {
			t.Fatalf("expected empty challenge, got %+v", r)
		}
		c.write("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00"+password)))
		r := c.read()
		expectSuccess(t, ts, c, r.kind, "alice")
	})
}

func TestPLAINOnlySHA1Key(t *testing.T) {
	store := defaultStore(t)
	store.creds["carol"] = store.creds["alice"][:1] // SHA-1 only
	ts := startServer(t, serverConfig{store: store})
	c := ts.dial(t, tls.VersionTLS13)
	expectSuccess(t, ts, c, c.plainAuth("", "carol", password), "carol")
}

func TestFailureConditions(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	tests := []struct {
		name string
		send string
		want string
	}{
		{"bad base64", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!notbase64</auth>", "incorrect-encoding"},
		{"unknown mechanism", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'>=</auth>", "invalid-mechanism"},
		{"abort", "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", "aborted"},
		{"malformed PLAIN", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("alice")) + "</auth>", "malformed-request"},
		{"malformed SCRAM", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>" + base64.StdEncoding.EncodeToString([]byte("x,,n=alice,r=abc")) + "</auth>", "malformed-request"},
		{"response first", "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>", "malformed-request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t, tls.VersionTLS13)
			c.write("%s", tc.send)
			if r := c.read(); r.kind != "failure" || r.cond != tc.want {
				t.Fatalf("got %s/%s, want failure/%s", r.kind, r.cond, tc.want)
			}
		})
	}
	t.Run("abort mid-exchange", func(t *testing.T) {
		c := ts.dial(t, tls.VersionTLS13)
		c.auth("SCRAM-SHA-256", []byte("n,,n=alice,r=abcdefgh"))
		if r := c.read(); r.kind != "challenge" {
			t.Fatalf("got %s", r.kind)
		}
		c.write("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
		if r := c.read(); r.cond != "aborted" {
			t.Fatalf("got %s/%s", r.kind, r.cond)
		}
	})
	t.Run("backend error", func(t *testing.T) {
		store := defaultStore(t)
		store.err = errors.New("database is locked")
		ts := startServer(t, serverConfig{store: store})
		c := ts.dial(t, tls.VersionTLS13)
		if got := c.scramAuth("SCRAM-SHA-256", "alice", password, "", nil); got != "temporary-auth-failure" {
			t.Fatalf("got %q", got)
		}
	})
}

func TestRetryThenSuccess(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	c := ts.dial(t, tls.VersionTLS13)
	if got := c.scramAuth("SCRAM-SHA-256", "alice", "wrong-password", "", nil); got != "not-authorized" {
		t.Fatalf("first attempt: %q", got)
	}
	if got := c.plainAuth("", "alice", "wrong-password"); got != "not-authorized" {
		t.Fatalf("second attempt: %q", got)
	}
	expectSuccess(t, ts, c, c.scramAuth("SCRAM-SHA-512-PLUS", "alice", password, "", withBinding(exporterBinding(t, c))), "alice")
}

func TestRetryLimit(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	c := ts.dial(t, tls.VersionTLS13)
	for i := range auth.MaxFailures {
		if got := c.scramAuth("SCRAM-SHA-256", "alice", "wrong-password", "", nil); got != "not-authorized" {
			t.Fatalf("attempt %d: %q", i, got)
		}
	}
	r := ts.result(t, c)
	if !errors.Is(r.err, auth.ErrTooManyFailures) {
		t.Fatalf("server error = %v, want ErrTooManyFailures", r.err)
	}
	if r.user != "" {
		t.Fatalf("OnSuccess called with %q", r.user)
	}
	// The server closed the connection.
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.d.Token(); err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("expected EOF, got %v", err)
	}
}

// fakeClock is a concurrency-safe manual clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestThrottleIntegration(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1700000000, 0)}
	th := auth.NewThrottle(2, time.Minute)
	th.SetClock(clock.Now)
	ts := startServer(t, serverConfig{store: defaultStore(t), throttle: th})

	c := ts.dial(t, tls.VersionTLS13)
	for range 2 {
		if got := c.plainAuth("", "alice", "wrong-password"); got != "not-authorized" {
			t.Fatalf("got %q", got)
		}
	}
	// Blocked now, even with the right password.
	if got := c.scramAuth("SCRAM-SHA-256", "alice", password, "", nil); got != "temporary-auth-failure" {
		t.Fatalf("throttled attempt: got %q", got)
	}
	if r := ts.result(t, c); !errors.Is(r.err, auth.ErrTooManyFailures) {
		t.Fatalf("server error = %v", r.err)
	}
	c = ts.dial(t, tls.VersionTLS13)
	if got := c.plainAuth("", "alice", password); got != "temporary-auth-failure" {
		t.Fatalf("new connection while throttled: got %q", got)
	}
	clock.Advance(time.Minute + time.Second)
	expectSuccess(t, ts, c, c.plainAuth("", "alice", password), "alice")
}

func TestDeriveCredentials(t *testing.T) {
	a, err := auth.DeriveCredentials(password, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := auth.DeriveCredentials(password, 5000)
	if err != nil {
		t.Fatal(err)
	}
	wantHash := []string{auth.HashSHA1, auth.HashSHA256, auth.HashSHA512}
	wantSize := []int{20, 32, 64}
	salts := map[string]bool{}
	for i := range a {
		for _, c := range []auth.Credential{a[i], b[i]} {
			if c.Hash != wantHash[i] || len(c.StoredKey) != wantSize[i] || len(c.ServerKey) != wantSize[i] || len(c.Salt) < 16 {
				t.Fatalf("bad credential %+v", c)
			}
			for _, field := range [][]byte{c.Salt, c.StoredKey, c.ServerKey} {
				if bytes.Contains(field, []byte(password)) {
					t.Fatal("password stored in credential")
				}
			}
			if salts[string(c.Salt)] {
				t.Fatal("salt reused")
			}
			salts[string(c.Salt)] = true
			if !auth.VerifyPassword(c, password) {
				t.Fatalf("VerifyPassword(%s) failed", c.Hash)
			}
		}
		if a[i].Iterations != auth.DefaultIterations || b[i].Iterations != 5000 {
			t.Fatal("wrong iteration count")
		}
		if bytes.Equal(a[i].StoredKey, b[i].StoredKey) || bytes.Equal(a[i].ServerKey, b[i].ServerKey) {
			t.Fatal("keys do not depend on salt")
		}
	}

	// Same keys as a SCRAM client computes (github.com/xdg-go/scram).
	cl, err := scram.SHA256.NewClient("alice", password, "")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(a[1].Salt), Iters: a[1].Iterations})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sc.StoredKey, a[1].StoredKey) || !bytes.Equal(sc.ServerKey, a[1].ServerKey) {
		t.Fatal("keys differ from xdg-go/scram's")
	}

	for _, bad := range []string{"", "pass\x00word", "\u0007"} {
		if _, err := auth.DeriveCredentials(bad, 0); !errors.Is(err, auth.ErrInvalidPassword) {
			t.Errorf("DeriveCredentials(%q) err = %v", bad, err)
		}
	}
	if _, err := auth.DeriveCredentials(password, 1000); err == nil {
		t.Error("accepted 1000 iterations")
	}
}

func TestVerifyPassword(t *testing.T) {
	creds, err := auth.DeriveCredentials("pass\u00A0wörd", 0) // NBSP, composed ö
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range creds {
		if !auth.VerifyPassword(c, "pass wo\u0308rd") { // ASCII space, decomposed ö
			t.Errorf("%s: normalised password rejected", c.Hash)
		}
		for _, bad := range []string{"", "pass word", "pass\u00A0wörd ", "\x00"} {
			if auth.VerifyPassword(c, bad) {
				t.Errorf("%s: accepted %q", c.Hash, bad)
			}
		}
	}
	bad := creds[1]
	bad.StoredKey = bad.StoredKey[:5]
	if auth.VerifyPassword(bad, "pass\u00A0wörd") {
		t.Error("accepted malformed credential")
	}
	// Emoji are unassigned in SASLprep's Unicode 3.2 but fine for PRECIS.
	creds, err = auth.DeriveCredentials("🔥🔥🔥", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !auth.VerifyPassword(creds[0], "🔥🔥🔥") {
		t.Error("emoji password rejected")
	}
}

func TestThrottle(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1700000000, 0)}
	th := auth.NewThrottle(3, time.Minute)
	th.SetClock(clock.Now)
	ip := netip.MustParseAddr("192.0.2.1")
	other := netip.MustParseAddr("192.0.2.2")

	for i := range 3 {
		if !th.Allow(ip, "alice") {
			t.Fatalf("blocked after %d failures", i)
		}
		th.RecordFailure(ip, "alice")
		clock.Advance(10 * time.Second)
	}
	if th.Allow(ip, "") {
		t.Error("address not blocked")
	}
	if th.Allow(other, "alice") {
		t.Error("account not blocked from another address")
	}
	if !th.Allow(other, "bob") {
		t.Error("unrelated address/account blocked")
	}
	// Sliding window: the first failure was at t=0, now t=30s.
	clock.Advance(31 * time.Second) // t=61s: first failure expired
	if !th.Allow(ip, "alice") {
		t.Error("still blocked after the oldest failure left the window")
	}
	th.RecordFailure(ip, "alice") // failures at 10s, 20s, 61s
	if th.Allow(ip, "alice") {
		t.Error("not blocked again")
	}
	clock.Advance(10 * time.Second) // t=71s: 10s expired
	if !th.Allow(ip, "alice") {
		t.Error("window does not slide")
	}

	// IPv6 addresses are grouped per /64; IPv4-mapped count as IPv4.
	th.RecordFailure(netip.MustParseAddr("2001:db8::1"), "")
	th.RecordFailure(netip.MustParseAddr("2001:db8::2"), "")
	th.RecordFailure(netip.MustParseAddr("2001:db8::3"), "")
	if th.Allow(netip.MustParseAddr("2001:db8::ffff"), "") {
		t.Error("IPv6 /64 not grouped")
	}
	if !th.Allow(netip.MustParseAddr("2001:db8:0:1::1"), "") {
		t.Error("other /64 blocked")
	}
	for range 3 {
		th.RecordFailure(netip.MustParseAddr("::ffff:198.51.100.7"), "")
	}
	if th.Allow(netip.MustParseAddr("198.51.100.7"), "") {
		t.Error("IPv4-mapped address not unmapped")
	}

	var nilThrottle *auth.Throttle
	nilThrottle.RecordFailure(ip, "alice")
	if !nilThrottle.Allow(ip, "alice") {
		t.Error("nil throttle blocks")
	}
}

func TestThrottleConcurrent(t *testing.T) {
	th := auth.NewThrottle(5, time.Minute)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				ip := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
				th.RecordFailure(ip, fmt.Sprint("user", g, i))
				th.Allow(ip, "alice")
			}
		}()
	}
	wg.Wait()
}

func TestUnexpectedElement(t *testing.T) {
	ts := startServer(t, serverConfig{store: defaultStore(t)})
	c := ts.dial(t, tls.VersionTLS13)
	if got := c.plainAuth("", "alice", "wrong-password"); got != "not-authorized" {
		t.Fatalf("got %q", got)
	}
	c.write("<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
	if r := ts.result(t, c); !errors.Is(r.err, auth.ErrUnexpectedElement) {
		t.Fatalf("server error = %v, want ErrUnexpectedElement", r.err)
	}
}
