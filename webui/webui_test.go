package webui

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	logs  *logBuffer
	st    *store.Store
	inv   *invite.Service
	ui    *UI
	h     http.Handler
	clock *clock
}

func newEnv(t *testing.T, mod ...func(*Config)) *env {
	t.Helper()
	return newEnvAt(t, t.TempDir(), mod...)
}

// newEnvAt is newEnv with the database in dir.
func newEnvAt(t *testing.T, dir string, mod ...func(*Config)) *env {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var ui *UI
	svc := invite.New(invite.Config{Store: st, Domain: "example.org", Now: c.Now, Logger: log,
		Registered: func(ctx context.Context, user string) { ui.Welcome(ctx, user) }})
	cfg := Config{Domain: "example.org", Store: st, Invites: svc, WebClientPath: "/chat/", HTTPSPort: 5281, Now: c.Now, Logger: log}
	for _, m := range mod {
		m(&cfg)
	}
	ui = New(cfg)
	web := httpd.New(log)
	ui.Register(web)
	return &env{t: t, logs: logs, st: st, inv: svc, ui: ui, h: web.Handler(), clock: c}
}

// logBuffer collects log output.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// browser keeps cookies across requests from one source address.
type browser struct {
	e       *env
	remote  string
	tls     bool
	cookies map[string]*http.Cookie
}

func (e *env) browser(remote string, tls bool) *browser {
	return &browser{e: e, remote: remote, tls: tls, cookies: map[string]*http.Cookie{}}
}

func (b *browser) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, "http://hearth.example"+path, body)
	req.RemoteAddr = b.remote
	if b.tls {
		req.TLS = &tls.ConnectionState{}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	b.e.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return rec
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

// csrf fetches path and returns the CSRF token of its form.
func (b *browser) csrf(path string) string {
	b.e.t.Helper()
	rec := b.do("GET", path, nil)
	m := csrfRE.FindStringSubmatch(rec.Body.String())
	if m == nil {
		b.e.t.Fatalf("no CSRF token on %s (%d): %s", path, rec.Code, rec.Body)
	}
	return m[1]
}

func wantCode(t *testing.T, rec *httptest.ResponseRecorder, code int, contains ...string) {
	t.Helper()
	if rec.Code != code {
		t.Fatalf("status %d, want %d: %s", rec.Code, code, rec.Body)
	}
	for _, c := range contains {
		if !strings.Contains(rec.Body.String(), c) {
			t.Fatalf("response lacks %q: %s", c, rec.Body)
		}
	}
}

func (e *env) adminAccount(name, password string) {
	e.t.Helper()
	ctx := context.Background()
	if err := account.Create(ctx, e.st, name, password); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.SetRole(ctx, name, store.RoleAdmin); err != nil {
		e.t.Fatal(err)
	}
}

const internet = "203.0.113.7:40000"

func TestInviteLandingValid(t *testing.T) {
	e := newEnv(t)
	e.adminAccount("mum", "mum password")
	inv, err := e.inv.Create(context.Background(), invite.Options{Inviter: "mum"})
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser(internet, true)
	rec := b.do("GET", "/invite/"+inv.Token, nil)
	wantCode(t, rec, 200,
		"mum@example.org",
		`href="xmpp:example.org?register;preauth=`+inv.Token+`"`,
		"Conversations", "F-Droid", "Monal", "Siskin", "Gajim", "Dino", `href="/chat/"`,
		`<svg xmlns="http://www.w3.org/2000/svg" class="qr"`, `role="img"`,
		`name="csrf"`, `<label for="username">`)
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Fatalf("CSP %q", csp)
	}
	if strings.Contains(rec.Body.String(), "<script") {
		t.Fatal("the page has a script")
	}
	// Plain HTTP from the internet goes to HTTPS (a password is typed here).
	rec = e.browser(internet, false).do("GET", "/invite/"+inv.Token, nil)
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "https://hearth.example:5281/invite/"+inv.Token {
		t.Fatalf("plain HTTP: %d %q", rec.Code, rec.Header().Get("Location"))
	}
}

func TestInviteLandingGone(t *testing.T) {
	e := newEnv(t)
	e.setUp()
	ctx := context.Background()
	expiring, _ := e.inv.Create(ctx, invite.Options{Expires: time.Hour})
	revoked, _ := e.inv.Create(ctx, invite.Options{})
	e.inv.Revoke(ctx, revoked.Token)
	used, _ := e.inv.Create(ctx, invite.Options{})
	if _, _, err := e.inv.Redeem(ctx, used.Token, "someone", "pass word", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	b := e.browser(internet, true)
	wantCode(t, b.do("GET", "/invite/"+expiring.Token, nil), http.StatusGone, "has expired")
	wantCode(t, b.do("GET", "/invite/"+revoked.Token, nil), http.StatusGone, "was revoked")
	wantCode(t, b.do("GET", "/invite/"+used.Token, nil), http.StatusGone, "already been used")
	wantCode(t, b.do("GET", "/invite/NOSUCHTOKEN", nil), http.StatusNotFound, "not valid")
	wantCode(t, b.do("GET", "/invite/%3Cscript%3E", nil), http.StatusNotFound)
}

func TestWebRegistrationFallback(t *testing.T) {
	e := newEnv(t)
	e.setUp()
	ctx := context.Background()
	inv, err := e.inv.Create(ctx, invite.Options{Role: store.RoleLimited, Circles: []string{"Family"}})
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser(internet, true)
	path := "/invite/" + inv.Token
	token := b.csrf(path)
	form := url.Values{"username": {"Nina"}, "password": {"nina password"}, "password2": {"nina password"}}

	// Without the CSRF token: refused, nothing created.
	wantCode(t, b.do("POST", path, form), http.StatusForbidden)
	// Another browser's token does not work either.
	other := e.browser(internet, true)
	other.csrf(path)
	form.Set("csrf", token)
	wantCode(t, other.do("POST", path, form), http.StatusForbidden)
	if ok, _ := e.st.AccountExists(ctx, "nina"); ok {
		t.Fatal("account created without a valid CSRF token")
	}

	form.Set("password2", "typo")
	wantCode(t, b.do("POST", path, form), http.StatusBadRequest, "not the same", `value="Nina"`)
	form.Set("password2", "nina password")
	form.Set("username", "bad name")
	wantCode(t, b.do("POST", path, form), http.StatusBadRequest, "not allowed")
	form.Set("username", "Nina")
	wantCode(t, b.do("POST", path, form), http.StatusCreated, "nina@example.org")

	if role, err := e.st.Role(ctx, "nina"); err != nil || role != store.RoleLimited {
		t.Fatalf("role %q %v", role, err)
	}
	if m, _ := e.st.CircleMembers(ctx, "Family"); len(m) != 1 || m[0] != "nina" {
		t.Fatalf("circle members %v", m)
	}
	// The single-use token is spent.
	wantCode(t, b.do("POST", path, form), http.StatusGone)
	wantCode(t, b.do("GET", path, nil), http.StatusGone)
	// Neither the token nor the password ever reached the log.
	if logs := e.logs.String(); strings.Contains(logs, inv.Token) || strings.Contains(logs, "nina password") || !strings.Contains(logs, "CSRF") {
		t.Fatalf("log output:\n%s", logs)
	}
}

func TestAdminLoginAndCSRF(t *testing.T) {
	e := newEnv(t)
	e.adminAccount("root", "root password")
	if err := account.Create(context.Background(), e.st, "kid", "kid password"); err != nil {
		t.Fatal(err)
	}
	// Plain HTTP is sent to HTTPS.
	rec := e.browser("192.168.1.20:5000", false).do("GET", "/admin/login", nil)
	if rec.Code != http.StatusMovedPermanently || !strings.HasPrefix(rec.Header().Get("Location"), "https://hearth.example:5281/admin/login") {
		t.Fatalf("plain HTTP login: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	b := e.browser(internet, true)
	if rec := b.do("GET", "/admin/invites", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/login" {
		t.Fatalf("admin page without login: %d", rec.Code)
	}
	token := b.csrf("/admin/login")
	login := url.Values{"username": {"root"}, "password": {"root password"}}
	wantCode(t, b.do("POST", "/admin/login", login), http.StatusForbidden) // no CSRF token
	login.Set("csrf", token)
	login.Set("password", "wrong")
	wantCode(t, b.do("POST", "/admin/login", login), http.StatusUnauthorized, "Wrong username or password")
	kid := url.Values{"username": {"kid"}, "password": {"kid password"}, "csrf": {token}}
	wantCode(t, b.do("POST", "/admin/login", kid), http.StatusForbidden, "not an administrator")
	login.Set("password", "root password")
	login.Set("username", "Root@example.org")
	rec = b.do("POST", "/admin/login", login)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	c := b.cookies[sessionCookie]
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v", c)
	}

	// A POST without the session's CSRF token is refused and changes nothing.
	create := url.Values{"kind": {"group"}, "uses": {"4"}, "expires": {"2w"}, "role": {"normal"}, "circles": {"Family, Friends"}, "note": {"cousins"}}
	wantCode(t, b.do("POST", "/admin/invites", create), http.StatusForbidden)
	create.Set("csrf", token) // the pre-login token is not the session's
	wantCode(t, b.do("POST", "/admin/invites", create), http.StatusForbidden)
	if invs, _ := e.inv.List(context.Background()); len(invs) != 0 {
		t.Fatalf("invitation created without a CSRF token: %v", invs)
	}
	create.Set("csrf", b.csrf("/admin/invites"))
	rec = b.do("POST", "/admin/invites", create)
	loc := rec.Header().Get("Location")
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/admin/invites?new=") {
		t.Fatalf("create: %d %q %s", rec.Code, loc, rec.Body)
	}
	newToken := strings.TrimPrefix(loc, "/admin/invites?new=")
	wantCode(t, b.do("GET", loc, nil), 200, "https://example.org/invite/"+newToken, "xmpp:example.org?register;preauth="+newToken, `class="qr"`, "0 of 4 used", "Family, Friends", "cousins")
	inv, err := e.st.Invite(context.Background(), newToken)
	if err != nil || inv.Inviter != "root" || inv.MaxUses != 4 {
		t.Fatalf("stored: %+v %v", inv, err)
	}
	create.Set("expires", "5w")
	wantCode(t, b.do("POST", "/admin/invites", create), http.StatusBadRequest, "between one hour and four weeks")

	revoke := url.Values{"token": {newToken}, "csrf": {b.csrf("/admin/invites")}}
	if rec := b.do("POST", "/admin/invites/revoke", revoke); rec.Code != http.StatusSeeOther {
		t.Fatalf("revoke: %d", rec.Code)
	}
	if _, err := e.inv.Check(context.Background(), newToken); err != invite.ErrRevoked {
		t.Fatalf("after revoke: %v", err)
	}

	// Users: list and delete (with confirmation), never oneself.
	wantCode(t, b.do("GET", "/admin/users", nil), 200, "kid@example.org", "root@example.org", "admin")
	del := url.Values{"username": {"kid"}, "confirm": {"kd"}, "csrf": {b.csrf("/admin/users")}}
	wantCode(t, b.do("POST", "/admin/users/delete", del), http.StatusBadRequest, "type the username again")
	del.Set("confirm", "kid")
	if rec := b.do("POST", "/admin/users/delete", del); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if ok, _ := e.st.AccountExists(context.Background(), "kid"); ok {
		t.Fatal("kid still exists")
	}
	del = url.Values{"username": {"root"}, "confirm": {"root"}, "csrf": {b.csrf("/admin/users")}}
	wantCode(t, b.do("POST", "/admin/users/delete", del), http.StatusBadRequest, "your own account")

	// Logging out ends the session.
	wantCode(t, b.do("POST", "/admin/logout", url.Values{"csrf": {b.csrf("/admin/users")}}), http.StatusSeeOther)
	if rec := b.do("GET", "/admin/users", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("after logout: %d", rec.Code)
	}
}

func TestAdminLoginThrottled(t *testing.T) {
	e := newEnv(t)
	e.adminAccount("root", "root password")
	b := e.browser(internet, true)
	login := url.Values{"username": {"root"}, "password": {"guess"}, "csrf": {b.csrf("/admin/login")}}
	for range loginFailures {
		wantCode(t, b.do("POST", "/admin/login", login), http.StatusUnauthorized)
	}
	login.Set("password", "root password")
	wantCode(t, b.do("POST", "/admin/login", login), http.StatusTooManyRequests)
	e.clock.Advance(loginWindow)
	if rec := b.do("POST", "/admin/login", login); rec.Code != http.StatusSeeOther {
		t.Fatalf("after the window: %d", rec.Code)
	}
}

func TestWizard(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SetupCode = "4711-0815"
		c.CertStatus = func(context.Context) StepStatus {
			return StepStatus{Summary: "Waiting for DNS", Details: []string{"no A record yet"}}
		}
	})
	// Not from the internet, not even the first page.
	wantCode(t, e.browser(internet, false).do("GET", "/setup", nil), http.StatusForbidden, "local network")
	wantCode(t, e.browser("[2001:db8::1]:4000", true).do("GET", "/setup", nil), http.StatusForbidden)
	// Nothing else is served before the setup (TestSetupGate).
	wantCode(t, e.browser(internet, false).do("GET", "/", nil), http.StatusServiceUnavailable, "Hearth is being set up")

	b := e.browser("192.168.1.23:51000", false)
	if rec := b.do("GET", "/", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/setup" {
		t.Fatalf("home before setup: %d", rec.Code)
	}
	token := b.csrf("/setup")
	form := url.Values{"username": {"Dad"}, "password": {"long enough"}, "password2": {"long enough"}, "code": {"wrong"}}
	wantCode(t, b.do("POST", "/setup", form), http.StatusForbidden) // no CSRF token
	form.Set("csrf", token)
	wantCode(t, b.do("POST", "/setup", form), http.StatusForbidden, "setup code is not right")
	form.Set("code", "4711-0815")
	form.Set("password2", "short")
	wantCode(t, b.do("POST", "/setup", form), http.StatusBadRequest, "not the same")
	form.Set("password", "short")
	wantCode(t, b.do("POST", "/setup", form), http.StatusBadRequest, "at least 8")
	form.Set("password", "long enough")
	form.Set("password2", "long enough")
	if rec := b.do("POST", "/setup", form); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/setup/domain" {
		t.Fatalf("step 1: %d %s", rec.Code, rec.Body)
	}
	if role, err := e.st.Role(context.Background(), "dad"); err != nil || role != store.RoleAdmin {
		t.Fatalf("admin role %q %v", role, err)
	}

	wantCode(t, b.do("GET", "/setup/domain", nil), 200, "_xmpp-client._tcp.example.org", "_xmpps-client._tcp.example.org", "_xmpp-server._tcp.example.org", "Not available yet")
	wantCode(t, b.do("GET", "/setup/certs", nil), 200, "Waiting for DNS", "no A record yet")
	wantCode(t, b.do("GET", "/setup/reach", nil), 200, "Not available.")
	rec := b.do("POST", "/setup/done", url.Values{"csrf": {b.csrf("/setup/done")}})
	wantCode(t, rec, 200, "https://example.org/invite/", `class="qr"`)

	// The wizard is gone for everyone else; even the LAN.
	other := e.browser("10.0.0.5:1234", true)
	wantCode(t, other.do("GET", "/setup", nil), http.StatusNotFound, "set up")
	if rec := other.do("GET", "/setup/domain", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("later step without the wizard session: %d", rec.Code)
	}
	form.Set("username", "intruder")
	form.Set("csrf", other.csrf("/admin/login"))
	wantCode(t, other.do("POST", "/setup", form), http.StatusNotFound)
	if ok, _ := e.st.AccountExists(context.Background(), "intruder"); ok {
		t.Fatal("a second administrator was created")
	}
}

func TestWizardSetupCodeThrottle(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SetupCode = "right" })
	b := e.browser("127.0.0.1:3000", false)
	form := url.Values{"username": {"x"}, "password": {"long enough"}, "password2": {"long enough"}, "code": {"guess"}, "csrf": {b.csrf("/setup")}}
	for range loginFailures {
		wantCode(t, b.do("POST", "/setup", form), http.StatusForbidden)
	}
	form.Set("code", "right")
	wantCode(t, b.do("POST", "/setup", form), http.StatusTooManyRequests)
}
