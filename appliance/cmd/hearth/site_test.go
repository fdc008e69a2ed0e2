package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/certs"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"github.com/hearthxmpp/hearth/ddns/ddnstest"
	"github.com/hearthxmpp/hearth/ddns/reach"
	"github.com/hearthxmpp/hearth/webui"
)

// The stored domain choice sets the flags not given on the command line;
// explicit flags win.
func TestApplySiteChoice(t *testing.T) {
	parse := func(args ...string) (*serveConfig, map[string]bool) {
		fs, cfg := serveFlags(io.Discard)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cfg, explicitFlags(fs)
	}
	cf := webui.SiteChoice{Domain: "chat.example.net", DNS: webui.DNSCloudflare, Zone: "example.net", Token: "tok", ACME: true, ACMEEmail: "dad@example.net"}

	cfg, ex := parse("--domain", "hearth.local")
	applied := applySiteChoice(cfg, ex, cf)
	a := &cfg.acme
	if a.dnsProvider != "cloudflare" || a.siteToken != "tok" || a.dnsZone != "example.net" || !a.ddns || !a.acme ||
		a.challenge != certs.ChallengeDNS01 || a.email != "dad@example.net" {
		t.Errorf("cloudflare choice: %+v", a)
	}
	if slices.Contains(applied, "tok") || !slices.Contains(applied, "dns-provider") {
		t.Errorf("applied = %q", applied)
	}
	if p, err := a.newProvider(); err != nil || p == nil {
		t.Errorf("provider from the stored token: %v", err)
	}

	// Explicit flags win, one by one.
	cfg, ex = parse("--dns-provider", "rfc2136", "--acme=false", "--acme-email", "ops@example.net", "--acme-challenge", "http-01")
	applySiteChoice(cfg, ex, cf)
	a = &cfg.acme
	if a.dnsProvider != "rfc2136" || a.siteToken != "" || a.dnsZone != "" || !a.ddns || a.acme || a.challenge != "http-01" || a.email != "ops@example.net" {
		t.Errorf("explicit flags: %+v", a)
	}

	// Combinations that would stop the start are not applied: Cloudflare
	// with --dns-credentials but no --dns-provider (no provider for DDNS
	// and DNS-01), a certificate by HTTP-01 without a plain HTTP port.
	cfg, ex = parse("--dns-credentials", "/etc/hearth/dns.env")
	applySiteChoice(cfg, ex, cf)
	if a = &cfg.acme; a.ddns || a.acme || a.challenge == certs.ChallengeDNS01 {
		t.Errorf("cloudflare without a provider: %+v", a)
	}
	cfg, ex = parse("--http-port", "0")
	applySiteChoice(cfg, ex, webui.SiteChoice{Domain: "family.example.org", DNS: webui.DNSManual, ACME: true})
	if cfg.acme.acme {
		t.Error("HTTP-01 applied without an HTTP port")
	}
	var se *webui.SettingError
	if err := cfg.applySite(t.Context(), webui.SiteChoice{Domain: "family.example.org", DNS: webui.DNSManual, ACME: true}); !errors.As(err, &se) {
		t.Errorf("saving HTTP-01 without an HTTP port: %v", err)
	}

	// Manual DNS with a certificate: HTTP-01, and port 80's mapping.
	cfg, ex = parse("--http-port", "80")
	applySiteChoice(cfg, ex, webui.SiteChoice{Domain: "family.example.org", DNS: webui.DNSManual, ACME: true})
	a = &cfg.acme
	if a.dnsProvider != "" || a.ddns || !a.acme || a.challenge != certs.ChallengeHTTP01 {
		t.Errorf("manual with ACME: %+v", a)
	}
	if !slices.ContainsFunc(cfg.publicPorts(), func(p reach.Port) bool { return p.Number == 80 && p.Protocol == "tcp" }) {
		t.Errorf("port 80 is not among the public ports: %+v", cfg.publicPorts())
	}
	// Manual without one, or no choice: nothing changes.
	for _, s := range []webui.SiteChoice{{Domain: "x.example", DNS: webui.DNSManual, ACMEEmail: "a@b.example"}, {}} {
		cfg, ex = parse()
		if got := applySiteChoice(cfg, ex, s); len(got) != 0 || cfg.acme.acme || cfg.acme.email != "" {
			t.Errorf("%+v applied %q", s, got)
		}
		if slices.ContainsFunc(cfg.publicPorts(), func(p reach.Port) bool { return p.Number == 5280 }) {
			t.Error("the HTTP port is public without HTTP-01")
		}
	}
}

// A data directory renamed by the wizard accepts its old --domain (the
// image's) and serves the new one; other mismatches stay errors.
func TestServeDomain(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	if d, err := serveDomain(ctx, st, "hearth.local", log); err != nil || d != "hearth.local" {
		t.Fatalf("first start: %q %v", d, err)
	}
	if _, err := serveDomain(ctx, st, "other.example", log); err == nil {
		t.Fatal("another domain accepted")
	}
	if err := st.RenameDomain(ctx, "hearth.local", "family.example"); err != nil {
		t.Fatal(err)
	}
	for _, flagDomain := range []string{"hearth.local", "family.example"} {
		if d, err := serveDomain(ctx, st, flagDomain, log); err != nil || d != "family.example" {
			t.Errorf("--domain %s: %q %v", flagDomain, d, err)
		}
	}
	if _, err := serveDomain(ctx, st, "other.example", log); err == nil || !strings.Contains(err.Error(), "belongs to domain \"family.example\"") {
		t.Errorf("other domain after the rename: %v", err)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

// webClient is a browser: cookies, no automatic redirects.
type webClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (w *webClient) do(method, path string, form url.Values) (int, string) {
	w.t.Helper()
	var resp *http.Response
	var err error
	if form == nil {
		resp, err = w.c.Get(w.base + path)
	} else {
		resp, err = w.c.PostForm(w.base+path, form)
	}
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (w *webClient) csrf(path string) string {
	w.t.Helper()
	code, body := w.do("GET", path, nil)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		w.t.Fatalf("GET %s: %d, no CSRF token: %s", path, code, body)
	}
	return m[1]
}

// streamFrom opens a stream to domain on addr and returns what the server
// sent until its stream features or a stream error (within 3 s).
func streamFrom(addr, domain string) string {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", domain)
	var got []byte
	b := make([]byte, 4096)
	for len(got) < 64<<10 {
		n, err := c.Read(b)
		got = append(got, b[:n]...)
		if err != nil || strings.Contains(string(got), "features>") || strings.Contains(string(got), "</error>") {
			break
		}
	}
	return string(got)
}

// The wizard's domain step renames a fresh data directory started with the
// image's --domain hearth.local to family.test and restarts the services
// in-process: the c2s stream then comes from family.test, the
// administrator logs in as dad@family.test, the live DNS check (against
// Knot through --dns-resolver) shows the records, and a new process
// started with --domain hearth.local again serves family.test.
func TestServeRestartOnDomainChange(t *testing.T) {
	p := freePorts(t, 5)
	k := ddnstest.StartKnot(t, map[string]string{"family.test": fmt.Sprintf("@ A 127.0.0.1\n* CNAME family.test.\n"+
		"_xmpp-client._tcp SRV 0 5 %d family.test.\n_xmpps-client._tcp SRV 0 5 %d family.test.\n", p[0], p[1])})
	dir := t.TempDir()
	args := append([]string{"--data", filepath.Join(dir, "data"), "--domain", "hearth.local",
		"--dns-resolver", k.Addr, "--stun-servers", "127.0.0.1:" + strconv.Itoa(p[4])},
		hasFlags(t, portFlags(p))...)
	args = append(args, "--turn-port", strconv.Itoa(p[4])) // Hearth's own STUN answers: 127.0.0.1
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	defer func() {
		if t.Failed() {
			t.Logf("serve stderr:\n%s", stderr.String())
		}
	}()
	start := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- serveLoop(ctx, args, stdout, stderr) }()
		return func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("serve exited with %d", code)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("serve did not stop")
			}
		}
	}
	c2s := "127.0.0.1:" + strconv.Itoa(p[0])
	waitFrom := func(domain string) {
		t.Helper()
		for i := 0; ; i++ {
			h := streamFrom(c2s, domain)
			if (strings.Contains(h, "from='"+domain+"'") || strings.Contains(h, `from="`+domain+`"`)) && strings.Contains(h, "features>") {
				return
			}
			if i == 300 {
				t.Fatalf("the c2s stream never came from %s", domain)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	stop := start()
	waitFrom("hearth.local")

	jar, _ := cookiejar.New(nil)
	w := &webClient{t: t, base: "http://127.0.0.1:" + strconv.Itoa(p[2]), c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	form := url.Values{"username": {"dad"}, "password": {"long enough"}, "password2": {"long enough"}, "csrf": {w.csrf("/setup")}}
	if code, body := w.do("POST", "/setup", form); code != http.StatusSeeOther {
		t.Fatalf("step 1: %d %s", code, body)
	}
	form = url.Values{"domain": {"family.test"}, "dns": {"manual"}, "csrf": {w.csrf("/setup/domain")}}
	code, body := w.do("POST", "/setup/domain", form)
	if code != 200 || !strings.Contains(body, `content="5;url=/setup/domain"`) {
		t.Fatalf("domain step: %d %s", code, body)
	}
	waitFrom("family.test")
	if !strings.Contains(stderr.String(), "restarting the services") {
		t.Error("no restart in the log")
	}

	cl := xmpptest.Dial(t, c2s, "family.test")
	cl.Login("dad", "long enough", "test")
	if cl.JID != "dad@family.test/test" {
		t.Errorf("bound JID %q", cl.JID)
	}
	cl.Close()

	// The wizard continues after the restart (web sessions are stored)
	// with the live DNS check.
	var page string
	for i := 0; ; i++ {
		code, page = w.do("GET", "/setup/domain", nil)
		if code == 200 || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"DNS check for family.test", "All DNS records are in place", "_xmpps-client._tcp.family.test", "groups.family.test", `value="manual" checked`} {
		if !strings.Contains(page, want) {
			t.Errorf("the domain step after the restart lacks %q: %d %s", want, code, page)
			break
		}
	}
	stop()

	// A new process with the image's --domain serves the new domain.
	stop = start()
	waitFrom("family.test")
	if !strings.Contains(stderr.String(), "renamed this data directory's domain") {
		t.Error("no info log about the renamed domain")
	}
	stop()

	// Once used, the domain stays.
	st, err := store.Open(filepath.Join(dir, "data", "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.PutRosterItem(context.Background(), "dad", store.RosterItem{JID: "mum@family.test"}); err != nil {
		t.Fatal(err)
	}
	var nf *store.NotFreshError
	if err := st.RenameDomain(context.Background(), "family.test", "other.test"); !errors.As(err, &nf) {
		t.Errorf("rename of used data: %v", err)
	}
}
