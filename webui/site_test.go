package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/ddns"
	"github.com/libdns/libdns"
)

// wizardBrowser runs step 1 from the LAN and returns the browser holding
// the wizard's session.
func (e *env) wizardBrowser() *browser {
	e.t.Helper()
	b := e.browser("192.168.1.23:51000", false)
	form := url.Values{"username": {"dad"}, "password": {"long enough"}, "password2": {"long enough"}, "csrf": {b.csrf("/setup")}}
	if rec := b.do("POST", "/setup", form); rec.Code != http.StatusSeeOther {
		e.t.Fatalf("step 1: %d %s", rec.Code, rec.Body)
	}
	return b
}

// fakeZones is a ddns.Provider that knows zones for one token; another
// token is refused like Cloudflare's API does (HTTP 403).
type fakeZones struct {
	token string
	zones []string
	ddns.Provider
}

func (f *fakeZones) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	if f.token != "right-token" {
		return nil, errors.New("got error status: HTTP 403: [{Code:10000 Message:Authentication error}]")
	}
	for _, z := range f.zones {
		if z == zone {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("expected 1 zone, got 0 for %s", zone)
}

func TestNormalizeDomain(t *testing.T) {
	for in, want := range map[string]struct {
		out   string
		local bool
		err   error
	}{
		"Family.Example.ORG.":            {"family.example.org", false, nil},
		"hearth.local":                   {"hearth.local", true, nil},
		"localhost":                      {"localhost", true, nil},
		"router.home.arpa":               {"router.home.arpa", true, nil},
		"xn--bcher-kva.de":               {"xn--bcher-kva.de", false, nil},
		"":                               {"", false, errDomainEmpty},
		"192.0.2.1":                      {"", false, errDomainIP},
		"[2001:db8::1]":                  {"", false, errDomainIP},
		"bad name.org":                   {"", false, errDomainInvalid},
		"-bad.org":                       {"", false, errDomainInvalid},
		"a..org":                         {"", false, errDomainInvalid},
		"bücher.de":                      {"", false, errDomainInvalid},
		"x_y.org":                        {"", false, errDomainInvalid},
		"user@example.org":               {"", false, errDomainInvalid},
		strings.Repeat("a", 64) + ".org": {"", false, errDomainInvalid},
	} {
		out, local, err := NormalizeDomain(in)
		if out != want.out || local != want.local || !errors.Is(err, want.err) {
			t.Errorf("NormalizeDomain(%q) = %q, %v, %v; want %+v", in, out, local, err, want)
		}
	}
}

// The domain step: validation messages, manual DNS, Cloudflare with a
// token checked by finding the zone, the "not fresh" refusal, the page
// that switches, and the live DNS check once a choice is in force.
func TestWizardDomainStep(t *testing.T) {
	var applied []SiteChoice
	var applyErr error
	e := newEnv(t, func(c *Config) {
		c.ApplySite = func(ctx context.Context, s SiteChoice) error {
			if applyErr != nil {
				return applyErr
			}
			applied = append(applied, s)
			return nil
		}
		c.NewCloudflare = func(token string) (ddns.Provider, error) {
			return &fakeZones{token: token, zones: []string{"example.net"}}, nil
		}
	})
	b := e.wizardBrowser()
	wantCode(t, b.do("GET", "/setup/domain", nil), 200, `value="example.org"`, "Cloudflare manages my domain", "I manage DNS myself",
		"Zone:Read", "DNS:Edit", `for="token"`, `for="domain"`, "_xmpp-client._tcp.example.org")
	post := func(form url.Values) *httptest.ResponseRecorder {
		form.Set("csrf", b.csrf("/setup/domain"))
		return b.do("POST", "/setup/domain", form)
	}
	for _, c := range []struct {
		form url.Values
		code int
		want string
	}{
		{url.Values{"domain": {"not a domain"}, "dns": {"manual"}}, 400, "not a valid domain name"},
		{url.Values{"domain": {"192.0.2.1"}, "dns": {"manual"}}, 400, "not an IP address"},
		{url.Values{"domain": {"hearth.local"}, "dns": {"manual"}, "acme": {"on"}}, 400, "only works at home"},
		{url.Values{"domain": {"localhost"}, "dns": {"cloudflare"}, "token": {"right-token"}}, 400, "only works at home"},
		{url.Values{"domain": {"family.example.org"}, "dns": {"manual"}, "email": {"not mail"}}, 400, "email address is not valid"},
		{url.Values{"domain": {"family.example.org"}}, 400, "Choose who manages"},
		{url.Values{"domain": {"chat.example.net"}, "dns": {"cloudflare"}}, 400, "Paste the Cloudflare API token"},
		{url.Values{"domain": {"chat.example.net"}, "dns": {"cloudflare"}, "token": {"wrong-token"}}, 400, "Cloudflare refused the token: "},
		{url.Values{"domain": {"chat.example.com"}, "dns": {"cloudflare"}, "token": {"right-token"}}, 400, "does not show a zone for chat.example.com"},
	} {
		rec := post(c.form)
		wantCode(t, rec, c.code, c.want)
		if !strings.Contains(rec.Body.String(), `name="domain"`) {
			t.Errorf("%v: the error page lacks the form", c.form)
		}
	}
	if len(applied) != 0 {
		t.Fatalf("invalid choices applied: %+v", applied)
	}
	if strings.Contains(e.logs.String(), "wrong-token") || strings.Contains(e.logs.String(), "right-token") {
		t.Error("a token is in the logs")
	}

	// Cloudflare: the zone is the parent that the token can read.
	rec := post(url.Values{"domain": {"Chat.Example.NET"}, "dns": {"cloudflare"}, "token": {"right-token"}, "email": {"dad@example.net"}})
	wantCode(t, rec, 200, `http-equiv="refresh" content="5;url=/setup/domain"`, "Hearth is switching to <strong>chat.example.net</strong>")
	if len(applied) != 1 || applied[0] != (SiteChoice{Domain: "chat.example.net", DNS: DNSCloudflare, Zone: "example.net", Token: "right-token", ACME: true, ACMEEmail: "dad@example.net"}) {
		t.Fatalf("applied %+v", applied)
	}
	// Manual with HTTP-01; a home-only name without ACME is fine.
	post(url.Values{"domain": {"family.example.org"}, "dns": {"manual"}, "acme": {"on"}})
	post(url.Values{"domain": {"hearth.local"}, "dns": {"manual"}})
	if len(applied) != 3 || applied[1] != (SiteChoice{Domain: "family.example.org", DNS: DNSManual, ACME: true}) ||
		applied[2] != (SiteChoice{Domain: "hearth.local", DNS: DNSManual}) {
		t.Fatalf("applied %+v", applied)
	}

	// Too late: somebody chatted already.
	applyErr = fmt.Errorf("wrapped: %w", &store.NotFreshError{Tables: []string{"mam_messages"}})
	rec = post(url.Values{"domain": {"family.example.org"}, "dns": {"manual"}})
	wantCode(t, rec, http.StatusConflict, "The domain can only be changed before anyone has chatted: there are archived messages.")
}

// Once a choice is in force the step shows it, the live DNS check and the
// status; a stored token is kept when the field stays empty.
func TestWizardDomainChecks(t *testing.T) {
	var applied []SiteChoice
	e := newEnv(t, func(c *Config) {
		c.Site = SiteChoice{Domain: "example.org", DNS: DNSCloudflare, Zone: "example.org", Token: "stored-token", ACME: true}
		c.C2SPort, c.C2STLSPort, c.S2SPort = 5522, -1, 5269
		c.CheckDNS = func(context.Context) []ddns.RecordCheck {
			return []ddns.RecordCheck{
				{Name: "example.org", Type: "A", Want: "203.0.113.1", Got: "203.0.113.1", OK: true},
				{Name: "_xmpp-client._tcp.example.org", Type: "SRV", Want: "0 5 5522 example.org.", Problem: "The SRV record is missing"},
			}
		}
		c.DomainStatus = func(context.Context) StepStatus {
			return StepStatus{Summary: "The DNS records at cloudflare are current"}
		}
		c.ApplySite = func(ctx context.Context, s SiteChoice) error { applied = append(applied, s); return nil }
		c.NewCloudflare = func(token string) (ddns.Provider, error) {
			if token != "stored-token" {
				return nil, errors.New("unexpected token")
			}
			return &fakeZones{token: "right-token", zones: []string{"example.org"}}, nil
		}
	})
	b := e.wizardBrowser()
	rec := b.do("GET", "/setup/domain", nil)
	wantCode(t, rec, 200, "One DNS record is missing or wrong", "The SRV record is missing", "203.0.113.1",
		"The DNS records at cloudflare are current", "A token is saved", "0 5 5522 example.org.")
	if strings.Contains(rec.Body.String(), "stored-token") {
		t.Fatal("the stored token is on the page")
	}
	if strings.Contains(rec.Body.String(), "_xmpps-client") {
		t.Error("a disabled port's SRV record is shown")
	}
	if !regexp.MustCompile(`value="cloudflare" checked`).MatchString(rec.Body.String()) {
		t.Error("the Cloudflare choice is not preselected")
	}
	form := url.Values{"domain": {"example.org"}, "dns": {"cloudflare"}, "csrf": {b.csrf("/setup/domain")}}
	wantCode(t, b.do("POST", "/setup/domain", form), 200, "switching")
	if len(applied) != 1 || applied[0].Token != "stored-token" {
		t.Fatalf("applied %+v", applied)
	}
}
