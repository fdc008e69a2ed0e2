package ddns_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/ddns"
	"github.com/hearthxmpp/hearth/ddns/ddnstest"
	"github.com/miekg/dns"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// addrSource is a Discover func whose answer the test changes.
type addrSource struct {
	mu sync.Mutex
	a  ddns.Addresses
}

func (s *addrSource) set(v4, v6 string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.a = ddns.Addresses{}
	if v4 != "" {
		s.a.IPv4 = netip.MustParseAddr(v4)
	}
	if v6 != "" {
		s.a.IPv6 = netip.MustParseAddr(v6)
	}
}

func (s *addrSource) Discover(context.Context) (ddns.Addresses, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a, nil
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func want(t *testing.T, what string, got []string, w ...string) {
	t.Helper()
	if w == nil {
		w = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, w) {
		t.Errorf("%s = %q, want %q", what, got, w)
	}
}

// The updater publishes A, AAAA, the three SRV records and the component
// CNAMEs through RFC 2136 to Knot, follows an address change, and never
// touches records it did not create.
func TestRFC2136Knot(t *testing.T) {
	k := ddnstest.StartKnot(t, map[string]string{
		"example.test": "www A 192.0.2.99\n" + // someone else's record
			"upload A 192.0.2.50\n", // a component name already in use
	})
	prov, err := ddns.NewRFC2136(k.Addr, k.KeyName, k.KeyAlg, k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	src := &addrSource{}
	src.set("203.0.113.10", "2001:db8::10")
	logs := &logBuffer{}
	newUpdater := func() *ddns.Updater {
		u, err := ddns.New(ddns.Config{
			Domain: "example.test", Provider: prov, ProviderName: "rfc2136",
			Components: []string{"groups.example.test", "upload.example.test"},
			C2SPort:    5222, C2STLSPort: 5223, S2SPort: 5269,
			Discover: src.Discover, Store: st,
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	u := newUpdater()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	want(t, "A", k.Query(t, "example.test", dns.TypeA), "203.0.113.10")
	want(t, "AAAA", k.Query(t, "example.test", dns.TypeAAAA), "2001:db8::10")
	want(t, "client SRV", k.Query(t, "_xmpp-client._tcp.example.test", dns.TypeSRV), "0 5 5222 example.test.")
	want(t, "direct TLS SRV", k.Query(t, "_xmpps-client._tcp.example.test", dns.TypeSRV), "0 5 5223 example.test.")
	want(t, "server SRV", k.Query(t, "_xmpp-server._tcp.example.test", dns.TypeSRV), "0 5 5269 example.test.")
	want(t, "groups CNAME", k.Query(t, "groups.example.test", dns.TypeCNAME), "example.test.")
	// Not ours: untouched, and no CNAME next to it.
	want(t, "upload A", k.Query(t, "upload.example.test", dns.TypeA), "192.0.2.50")
	want(t, "upload CNAME", k.Query(t, "upload.example.test", dns.TypeCNAME))
	want(t, "www A", k.Query(t, "www.example.test", dns.TypeA), "192.0.2.99")

	s := u.Status()
	if s.LastError != "" || s.LastUpdate.IsZero() || s.LastChange.IsZero() {
		t.Errorf("status after the first update: %+v", s)
	}
	if len(s.Conflicts) != 1 || !strings.Contains(s.Conflicts[0], "upload.example.test") {
		t.Errorf("conflicts = %q, want one for upload.example.test", s.Conflicts)
	}
	if !slices.Contains(s.Records, ddns.Record{Name: "example.test", Type: "A", Value: "203.0.113.10", Owned: true}) {
		t.Errorf("status records %+v lack the A record", s.Records)
	}

	// The public IPv4 changes and IPv6 goes away; a fresh Updater (a
	// restart) on the same store still knows what it owns.
	src.set("203.0.113.20", "")
	u = newUpdater()
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	want(t, "A after the change", k.Query(t, "example.test", dns.TypeA), "203.0.113.20")
	want(t, "AAAA after IPv6 went away", k.Query(t, "example.test", dns.TypeAAAA))
	want(t, "www A after the change", k.Query(t, "www.example.test", dns.TypeA), "192.0.2.99")
	want(t, "upload A after the change", k.Query(t, "upload.example.test", dns.TypeA), "192.0.2.50")
	want(t, "client SRV after the change", k.Query(t, "_xmpp-client._tcp.example.test", dns.TypeSRV), "0 5 5222 example.test.")
	if s := u.Status(); len(s.Conflicts) != 1 {
		t.Errorf("conflicts after the change = %q", s.Conflicts)
	}

	// No STUN answer (IPv4 unknown) keeps the A record.
	if err := u.Update(ctx, ddns.Addresses{IPv6: netip.MustParseAddr("2001:db8::20")}); err != nil {
		t.Fatal(err)
	}
	want(t, "A with IPv4 unknown", k.Query(t, "example.test", dns.TypeA), "203.0.113.20")
	want(t, "AAAA back", k.Query(t, "example.test", dns.TypeAAAA), "2001:db8::20")

	// Run follows the next change by itself.
	src.set("203.0.113.30", "2001:db8::30")
	u2, err := ddns.New(ddns.Config{
		Domain: "example.test", Provider: prov, Discover: src.Discover, Store: st,
		Components: []string{"groups.example.test", "upload.example.test"},
		C2SPort:    5222, C2STLSPort: 5223, S2SPort: 5269,
		Interval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- u2.Run(rctx) }()
	for i := 0; ; i++ {
		if s := u2.Status(); s.Addresses.IPv4 == netip.MustParseAddr("203.0.113.30") && !s.LastUpdate.IsZero() {
			break // one complete pass with the new addresses
		}
		if i == 200 {
			t.Fatalf("Run did not update the A record; status %+v", u2.Status())
		}
		time.Sleep(25 * time.Millisecond)
	}
	rcancel()
	<-runDone
	want(t, "A after Run", k.Query(t, "example.test", dns.TypeA), "203.0.113.30")
	want(t, "AAAA after Run", k.Query(t, "example.test", dns.TypeAAAA), "2001:db8::30")
	want(t, "www A at the end", k.Query(t, "www.example.test", dns.TypeA), "192.0.2.99")

	if strings.Contains(logs.String(), k.Secret) {
		t.Error("the TSIG secret appears in the logs")
	}
	if !strings.Contains(logs.String(), "record created") {
		t.Errorf("no record change was logged:\n%s", logs.String())
	}
}

// An address record someone else created at the domain is never replaced:
// Hearth reports the conflict and still publishes the SRV records.
func TestRFC2136ForeignAddress(t *testing.T) {
	k := ddnstest.StartKnot(t, map[string]string{"taken.test": "@ A 192.0.2.1\n"})
	prov, err := ddns.NewRFC2136(k.Addr, k.KeyName, k.KeyAlg, k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	src := &addrSource{}
	src.set("203.0.113.10", "")
	u, err := ddns.New(ddns.Config{Domain: "taken.test", Provider: prov, Discover: src.Discover, Store: openStore(t), C2SPort: 5222})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := u.Update(ctx, ddns.Addresses{IPv4: netip.MustParseAddr("203.0.113.10")}); err != nil {
		t.Fatal(err)
	}
	want(t, "A", k.Query(t, "taken.test", dns.TypeA), "192.0.2.1")
	want(t, "SRV", k.Query(t, "_xmpp-client._tcp.taken.test", dns.TypeSRV), "0 5 5222 taken.test.")
	want(t, "xmpps SRV (port 0: not published)", k.Query(t, "_xmpps-client._tcp.taken.test", dns.TypeSRV))
	if s := u.Status(); len(s.Conflicts) != 1 || !strings.Contains(s.Conflicts[0], "taken.test A") {
		t.Errorf("conflicts = %q", s.Conflicts)
	}
}

// A wrong TSIG key is refused by the server; the error is kept in Status.
func TestRFC2136BadKey(t *testing.T) {
	k := ddnstest.StartKnot(t, map[string]string{"example.test": ""})
	prov, err := ddns.NewRFC2136(k.Addr, k.KeyName, k.KeyAlg, "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA==")
	if err != nil {
		t.Fatal(err)
	}
	src := &addrSource{}
	src.set("203.0.113.10", "")
	u, err := ddns.New(ddns.Config{Domain: "example.test", Provider: prov, Discover: src.Discover, Store: openStore(t), C2SPort: 5222})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := u.Check(ctx); err == nil {
		t.Fatal("update with a wrong key succeeded")
	}
	if u.Status().LastError == "" {
		t.Error("no LastError in status")
	}
	want(t, "A", k.Query(t, "example.test", dns.TypeA))
}

func TestNewRFC2136Validation(t *testing.T) {
	for _, c := range []struct{ server, name, alg, secret string }{
		{"", "k.", "", "c2VjcmV0"},
		{"127.0.0.1", "", "", "c2VjcmV0"},
		{"127.0.0.1", "k.", "hmac-md4", "c2VjcmV0"},
		{"127.0.0.1", "k.", "", "not base64!"},
	} {
		if _, err := ddns.NewRFC2136(c.server, c.name, c.alg, c.secret); err == nil {
			t.Errorf("NewRFC2136(%q, %q, %q, %q) succeeded", c.server, c.name, c.alg, c.secret)
		}
	}
	if _, err := ddns.NewCloudflare(" "); err == nil {
		t.Error("NewCloudflare with an empty token succeeded")
	}
}
