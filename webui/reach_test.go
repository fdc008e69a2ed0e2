package webui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/ddns/reach"
)

// loggedIn returns a browser from the internet logged in as name (an
// administrator created here with password "NAME password").
func (e *env) loggedIn(name string) *browser {
	e.t.Helper()
	e.adminAccount(name, name+" password")
	return e.login(name)
}

// login returns a browser from the internet logged in as the existing
// account name (password "NAME password").
func (e *env) login(name string) *browser {
	e.t.Helper()
	b := e.browser(internet, true)
	login := url.Values{"username": {name}, "password": {name + " password"}, "csrf": {b.csrf("/admin/login")}}
	if rec := b.do("POST", "/admin/login", login); rec.Code != http.StatusSeeOther {
		e.t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	return b
}

// post sends form with the CSRF token of page.
func (b *browser) post(page, path string, form url.Values) *httptest.ResponseRecorder {
	b.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", b.csrf(page))
	return b.do("POST", path, form)
}

func cgnatVerdict() reach.Verdict {
	return reach.Verdict{
		Kind:      reach.CGNAT,
		Summary:   "Your internet provider shares one public address among many customers.",
		Steps:     []string{"Ask your provider for a public IPv4 address."},
		Public:    netip.MustParseAddr("198.51.100.9"),
		RouterWAN: netip.MustParseAddr("100.64.3.4"),
		Ports: []reach.PortResult{
			{Port: reach.Port{Protocol: "tcp", Number: 5222, Purpose: "phones and apps (XMPP)"}, Mapped: true, Hairpin: "failed"},
			{Port: reach.Port{Protocol: "udp", Number: 3478, Purpose: "calls (STUN/TURN)"}, MapErr: "ConflictInMappingEntry"},
		},
	}
}

func TestWizardReachability(t *testing.T) {
	var calls atomic.Int32
	var deadline atomic.Value
	e := newEnv(t, func(c *Config) {
		c.ReachTimeout = 7 * time.Second
		c.Reach = func(ctx context.Context) reach.Verdict {
			calls.Add(1)
			d, _ := ctx.Deadline()
			deadline.Store(d)
			return cgnatVerdict()
		}
	})
	b := e.browser("192.168.1.23:51000", false)
	form := url.Values{"username": {"dad"}, "password": {"long enough"}, "password2": {"long enough"}, "csrf": {b.csrf("/setup")}}
	if rec := b.do("POST", "/setup", form); rec.Code != http.StatusSeeOther {
		t.Fatalf("step 1: %d %s", rec.Code, rec.Body)
	}
	wantCode(t, b.do("GET", "/setup/reach", nil), 200, "Not checked yet", "Check now", `action="/setup/reach"`)

	// No CSRF token, or no wizard session: no check.
	wantCode(t, b.do("POST", "/setup/reach", url.Values{}), http.StatusForbidden)
	other := e.browser("192.168.1.24:1000", true)
	if rec := other.do("POST", "/setup/reach", url.Values{"csrf": {other.csrf("/admin/login")}}); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/setup" {
		t.Fatalf("check without the wizard session: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if calls.Load() != 0 {
		t.Fatal("a refused request ran the check")
	}

	rec := b.post("/setup/reach", "/setup/reach", nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/setup/reach" || calls.Load() != 1 {
		t.Fatalf("check: %d %q calls %d", rec.Code, rec.Header().Get("Location"), calls.Load())
	}
	if d := deadline.Load().(time.Time); d.IsZero() || time.Until(d) > 7*time.Second {
		t.Fatalf("the check ran without the configured timeout (deadline %v)", d)
	}
	wantCode(t, b.do("GET", "/setup/reach", nil), 200,
		"Not reachable over IPv4", "shares one public address", "Ask your provider for a public IPv4 address.",
		"198.51.100.9", "100.64.3.4", "5222/tcp", "phones and apps (XMPP)", "opened by the router",
		"3478/udp", "refused by the router: ConflictInMappingEntry", "cannot loop back", "Checked at 12:00 on 1 March 2025")

	// The admin's network page shows the same verdict and checks again.
	a := e.loggedIn("root")
	wantCode(t, a.do("GET", "/admin/network", nil), 200, "Not reachable over IPv4", "5222/tcp", `action="/admin/network/check"`)
	wantCode(t, a.do("POST", "/admin/network/check", url.Values{}), http.StatusForbidden)
	e.clock.Advance(time.Hour)
	if rec := a.post("/admin/network", "/admin/network/check", nil); rec.Code != http.StatusSeeOther || calls.Load() != 2 {
		t.Fatalf("admin check: %d, calls %d", rec.Code, calls.Load())
	}
	wantCode(t, a.do("GET", "/admin/network", nil), 200, "Checked at 13:00")
	// Not for someone who is not logged in.
	if rec := e.browser(internet, true).do("GET", "/admin/network", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("network page without login: %d", rec.Code)
	}
}

func TestReachabilityUnavailable(t *testing.T) {
	e := newEnv(t)
	a := e.loggedIn("root")
	rec := a.do("GET", "/admin/network", nil)
	wantCode(t, rec, 200, "Not available.", "Forward TCP ports")
	if strings.Contains(rec.Body.String(), "Check now") {
		t.Fatal("a Check now button without a check")
	}
	if rec := a.post("/admin/network", "/admin/network/check", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("check without Reach: %d", rec.Code)
	}
}
