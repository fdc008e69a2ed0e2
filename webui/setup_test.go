package webui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/invite"
)

// setUp ends the setup the way the wizard does: an administrator
// ("founder", password "founder password") exists.
func (e *env) setUp() {
	e.t.Helper()
	e.adminAccount("founder", "founder password")
}

// TestSetupGate: until an administrator exists only the wizard (and the
// style sheet) answers: every other page sends local clients to /setup
// and tells others that Hearth is being set up, GET or POST, whatever the
// page; afterwards the pages answer as usual, and the wizard is closed.
func TestSetupGate(t *testing.T) {
	e := newEnv(t)
	inv, err := e.inv.Create(context.Background(), invite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pages := []struct {
		method, path string
		after        int // status once set up, from the internet over HTTPS
	}{
		{"GET", "/", http.StatusOK},
		{"GET", "/invite/" + inv.Token, http.StatusOK},
		{"POST", "/invite/" + inv.Token, http.StatusForbidden}, // no CSRF token
		{"GET", "/admin/login", http.StatusOK},
		{"POST", "/admin/login", http.StatusForbidden},
		{"GET", "/admin/", http.StatusSeeOther},
		{"GET", "/admin/users", http.StatusSeeOther}, // to the login page
		{"GET", "/account/login", http.StatusOK},
		{"GET", "/account", http.StatusSeeOther},
		{"GET", "/reset/NOSUCHTOKEN", http.StatusGone},
		{"GET", "/terms", http.StatusNotFound},
		{"GET", "/privacy", http.StatusNotFound},
	}
	lan := e.browser("192.168.1.23:51000", true)
	lanHTTP := e.browser("[fe80::1]:51000", false)
	outside := e.browser(internet, true)
	outsideHTTP := e.browser("[2001:db8::1]:4000", false)
	form := url.Values{"username": {"x"}, "password": {"y"}}
	body := func(method string) url.Values {
		if method == "POST" {
			return form
		}
		return nil
	}
	for _, p := range pages {
		for _, b := range []*browser{lan, lanHTTP} {
			rec := b.do(p.method, p.path, body(p.method))
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/setup" {
				t.Fatalf("%s %s from %s before setup: %d %q", p.method, p.path, b.remote, rec.Code, rec.Header().Get("Location"))
			}
		}
		for _, b := range []*browser{outside, outsideHTTP} {
			wantCode(t, b.do(p.method, p.path, body(p.method)), http.StatusServiceUnavailable, "Hearth is being set up")
		}
	}
	// The wizard and the style sheet answer; the wizard only on the LAN.
	wantCode(t, lan.do("GET", "/setup", nil), http.StatusOK, `name="csrf"`)
	if rec := lan.do("GET", "/setup/domain", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/setup" {
		t.Fatalf("a later step without the wizard's session: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	wantCode(t, outside.do("GET", "/setup", nil), http.StatusForbidden, "local network")
	wantCode(t, outside.do("GET", CSSPath, nil), http.StatusOK)
	wantCode(t, lan.do("GET", CSSPath, nil), http.StatusOK)
	// The page from the internet says nothing about the server.
	if rec := outside.do("GET", "/invite/"+inv.Token, nil); strings.Contains(rec.Body.String(), "example.org") || strings.Contains(rec.Body.String(), "/setup") {
		t.Fatalf("the set-up page tells too much: %s", rec.Body)
	}

	// Set up (the wizard's first step makes the administrator).
	token := lan.csrf("/setup")
	rec := lan.do("POST", "/setup", url.Values{"username": {"dad"}, "password": {"long enough"}, "password2": {"long enough"}, "csrf": {token}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/setup/domain" {
		t.Fatalf("wizard step 1: %d %s", rec.Code, rec.Body)
	}
	for _, p := range pages {
		for _, b := range []*browser{e.browser("10.0.0.5:1234", true), e.browser(internet, true)} {
			rec := b.do(p.method, p.path, body(p.method))
			if rec.Code != p.after {
				t.Fatalf("%s %s from %s after setup: %d, want %d: %s", p.method, p.path, b.remote, rec.Code, p.after, rec.Body)
			}
		}
	}
	// The wizard goes on for its own browser, and is closed to others.
	wantCode(t, lan.do("GET", "/setup/domain", nil), http.StatusOK)
	wantCode(t, e.browser("10.0.0.5:1234", true).do("GET", "/setup", nil), http.StatusNotFound, "set up")
}

// TestSetupGateStoreFailure: when the roles cannot be read, the pages
// fail closed.
func TestSetupGateStoreFailure(t *testing.T) {
	e := newEnv(t)
	e.st.Close()
	wantCode(t, e.browser(internet, true).do("GET", "/admin/login", nil), http.StatusInternalServerError, "Something went wrong")
}
