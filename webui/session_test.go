package webui

import (
	"context"
	"github.com/hearthxmpp/hearth/appliance/store"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/ddns/reach"
)

// restart replaces the env's UI by a new one on the same store and
// configuration, as a restart of the process (or of the services after a
// domain change) does; browsers keep their cookies.
func (e *env) restart() {
	e.t.Helper()
	e.ui = New(e.ui.cfg)
	web := httpd.New(e.ui.log)
	e.ui.Register(web)
	e.h = web.Handler()
}

func TestSessionSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	a := e.loggedIn("root")
	token := a.csrf("/admin/invites")
	anon := e.browser(internet, true)
	anonToken := anon.csrf("/admin/login")
	e.restart()

	// The session and its CSRF token still work.
	wantCode(t, a.do("GET", "/admin/invites", nil), 200, "root")
	rec := a.do("POST", "/admin/invites", url.Values{"kind": {"single"}, "expires": {"1w"}, "role": {"normal"}, "csrf": {token}})
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("POST with a token from before the restart: %d %s", rec.Code, rec.Body)
	}
	// So does the pre-login token.
	login := url.Values{"username": {"root"}, "password": {"root password"}, "csrf": {anonToken}}
	if rec := anon.do("POST", "/admin/login", login); rec.Code != http.StatusSeeOther {
		t.Fatalf("login with a pre-login token from before the restart: %d %s", rec.Code, rec.Body)
	}

	// The store keeps only the digest of the cookie.
	cookie := a.cookies[sessionCookie].Value
	ctx := context.Background()
	if _, err := e.st.WebSessionByDigest(ctx, cookie, e.clock.Now()); err == nil {
		t.Fatal("the cookie value itself is stored")
	}
	if ws, err := e.st.WebSessionByDigest(ctx, tokenDigest(cookie), e.clock.Now()); err != nil || ws.Username != "root" || ws.Wizard {
		t.Fatalf("stored session %+v, %v", ws, err)
	}

	// Logging out ends it for every later process too.
	a.post("/admin/invites", "/admin/logout", nil)
	e.restart()
	a.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: cookie}
	if rec := a.do("GET", "/admin/invites", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("session after logout: %d", rec.Code)
	}
}

func TestWizardSessionSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.168.1.23:51000", false)
	form := url.Values{"username": {"dad"}, "password": {"long enough"}, "password2": {"long enough"}, "csrf": {b.csrf("/setup")}}
	if rec := b.do("POST", "/setup", form); rec.Code != http.StatusSeeOther {
		t.Fatalf("step 1: %d %s", rec.Code, rec.Body)
	}
	token := b.csrf("/setup/done")
	e.restart()
	wantCode(t, b.do("GET", "/setup/domain", nil), 200)
	wantCode(t, b.do("POST", "/setup/done", url.Values{"csrf": {token}}), 200, "https://example.org/invite/")

	// An administrator no more (another one took the role away): the
	// wizard's session cannot go on, and is over.
	e.user("mum")
	if err := e.st.SetRole(context.Background(), "mum", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetRole(context.Background(), "dad", store.RoleNormal); err != nil {
		t.Fatal(err)
	}
	wantCode(t, b.do("POST", "/setup/done", url.Values{"csrf": {token}}), http.StatusForbidden, "no longer administers")
	if rec := b.do("GET", "/setup/domain", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("wizard step after the demotion: %d", rec.Code)
	}
}

func TestSessionEndsWithAccountAndExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mum := e.loggedIn("mum")
	kid := func() *browser { e.user("kid"); return e.userLogin("kid") }()
	wantCode(t, kid.do("GET", "/account", nil), 200)

	// An account deleted behind the UI's back (CLI, other process): its
	// sessions go with it (ON DELETE CASCADE), even if it comes back.
	if err := e.st.DeleteAccount(ctx, "kid"); err != nil {
		t.Fatal(err)
	}
	e.user("kid")
	if rec := kid.do("GET", "/account", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("session of a deleted account: %d", rec.Code)
	}

	// Expiry: valid until SessionLifetime after the login, not after.
	e.clock.Advance(SessionLifetime - time.Minute)
	wantCode(t, mum.do("GET", "/admin/users", nil), 200)
	e.clock.Advance(time.Minute)
	if rec := mum.do("GET", "/admin/users", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/login" {
		t.Fatalf("expired session: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	// The background job prunes expired sessions.
	digest := tokenDigest(mum.cookies[sessionCookie].Value)
	e.ui.runJobs(ctx)
	if _, err := e.st.WebSessionByDigest(ctx, digest, time.Time{}); err == nil {
		t.Fatal("expired session kept after the job")
	}
}

func TestSessionsBoundedPerUser(t *testing.T) {
	e := newEnv(t)
	first := e.loggedIn("root")
	for range maxSessionsPerUser {
		e.login("root")
	}
	if rec := first.do("GET", "/admin/users", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("oldest session beyond the bound: %d", rec.Code)
	}
}

func TestReachVerdictSurvivesRestart(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Reach = func(context.Context) reach.Verdict { return cgnatVerdict() }
	})
	a := e.loggedIn("root")
	if rec := a.post("/admin/network", "/admin/network/check", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("check: %d", rec.Code)
	}
	e.clock.Advance(time.Hour)
	e.restart()
	wantCode(t, a.do("GET", "/admin/network", nil), 200,
		"Not reachable over IPv4", "198.51.100.9", "100.64.3.4", "refused by the router: ConflictInMappingEntry", "Checked at 12:00 on 1 March 2025")
	if _, err := e.st.Setting(context.Background(), settingReachLast); err != nil {
		t.Fatal(err)
	}
}
