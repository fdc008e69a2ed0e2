// Package webui is Hearth's web interface, served by the appliance's HTTP(S)
// server (package appliance/httpd): the first-boot setup wizard (with the
// reachability check of ddns/reach), the public invitation landing pages
// with their web registration fallback (XEP-0401), the public terms of
// service and privacy pages, password reset links, each user's own account
// pages (password, XEP-0227 data export, deletion) and the administrator's
// pages (invitations, users, circles, announcements, settings, network,
// system, backup). Pages are github.com/a-h/templ components rendered on
// the server; they need no JavaScript and load nothing from other sites.
//
// Security rules, in one place:
//   - the wizard exists only while no administrator does, and answers only
//     clients on the local network (loopback, private or link-local source
//     addresses), behind an optional setup code; until then it is the only
//     page served (others send local clients to it and answer 503 to the
//     rest);
//   - the admin and account pages need HTTPS (plain HTTP is redirected)
//     and an XMPP account (an administrator's for the admin pages; the
//     role is checked on every request): the password is checked against the
//     stored SCRAM keys (auth.VerifyPassword, through the SASL PLAIN
//     exchange), with failed logins throttled per address and account;
//   - sessions are random 256-bit ids in a cookie that is HttpOnly,
//     SameSite=Strict and Secure on HTTPS, kept in the store only as
//     SHA-256 digests (store.WebSession), so they survive a restart and
//     end with the account; every POST carries a CSRF token (an HMAC with
//     a key kept in the settings table) bound to the session (or, before
//     login, to a random cookie) and is refused (403) without it;
//   - invitation and reset tokens and passwords are never logged; reset
//     tokens are stored only as digests.
//
// webui calls the appliance's Go APIs (store, invite, account); it never
// touches SQL.
package webui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/a-h/templ"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/ddns"
	"github.com/hearthxmpp/hearth/ddns/reach"
)

//go:embed static/hearth.css
var staticFS embed.FS

// CSSPath is where the style sheet is served.
const CSSPath = "/ui/hearth.css"

// StepStatus is the live state of one setup step that another part of
// Hearth checks (domain and DNS, certificates, reachability).
type StepStatus struct {
	// OK reports that the step is done.
	OK bool
	// Summary is one plain-language sentence.
	Summary string
	// Details are further lines (records, ports, reasons of a failure).
	Details []string
}

// StepFunc reports a step's status; webui calls it on each page view.
type StepFunc func(ctx context.Context) StepStatus

// Config configures the UI.
type Config struct {
	// Domain is the XMPP domain served. Required.
	Domain string
	// Store holds accounts and roles. Required.
	Store *store.Store
	// Invites applies the invitation rules. Required.
	Invites *invite.Service
	// BaseURL is the public HTTPS origin for invitation links, like
	// "https://example.org" or "https://example.org:5281"; "" means
	// "https://" + Domain.
	BaseURL string
	// HTTPSPort is the port the admin pages are redirected to from plain
	// HTTP (0: 443).
	HTTPSPort int
	// WebClientPath is the path of the web chat ("/chat/"), "" if none.
	WebClientPath string
	// SetupCode, if set, must be entered in the wizard's first step (it is
	// printed when the image is built).
	SetupCode string
	// DomainStatus and CertStatus feed the wizard's steps 2 and 3 and the
	// system page; nil shows the step as not available yet.
	DomainStatus, CertStatus StepFunc
	// Site is the domain choice in force (site.go; DNS "" before the
	// wizard's domain step saved one): the domain form starts from it.
	Site SiteChoice
	// ApplySite saves the domain step's choice and restarts the services
	// in-process, after the answer was written, so that they serve the new
	// domain; it returns a *store.NotFreshError when the domain can no
	// longer be renamed. nil: the domain cannot be changed here.
	ApplySite func(ctx context.Context, c SiteChoice) error
	// CheckDNS resolves the domain's records live (ddns.CheckRecords) for
	// the domain step once a choice was saved; nil leaves the check out.
	CheckDNS func(ctx context.Context) []ddns.RecordCheck
	// NewCloudflare builds the Cloudflare provider the domain step checks
	// a token with (ddns.FindZone); nil means ddns.NewCloudflare.
	NewCloudflare func(token string) (ddns.Provider, error)
	// C2SPort, C2STLSPort and S2SPort are the ports the SRV records shown
	// by the domain step name (0: the standard 5222, 5223, 5269;
	// negative: left out).
	C2SPort, C2STLSPort, S2SPort int
	// Reach checks whether the internet can reach Hearth (the wizard's
	// step 4 and the network page run it on "Check now"): normally
	// ddns/reach.Check after refreshing the router's port mappings. nil
	// shows the check as not available.
	Reach func(ctx context.Context) reach.Verdict
	// ReachTimeout bounds one check; 0 means DefaultReachTimeout.
	ReachTimeout time.Duration
	// Server is the running XMPP server: sessions for the system page,
	// ending the streams of deleted accounts, welcome messages and
	// announcements. nil leaves those out.
	Server *server.Server
	// AccountDeleted, if set, is called after an account and its stored
	// data are gone, for what other services hold live (the group chat
	// service's affiliations, muc.Service.ForgetUser).
	AccountDeleted func(ctx context.Context, username string)
	// UploadDir is where uploaded files are kept (XEP-0363, mod/upload):
	// a deleted account's files go from there. "" when uploads are off.
	UploadDir string
	// DeletionGrace is how long an account deleted by an administrator
	// (or by its user) stays locked before the background job (Start)
	// deletes it, while the deletion can be undone; 0 deletes at once.
	DeletionGrace time.Duration
	// DataDir is the data directory (disk space, database size, backups);
	// "" leaves those out.
	DataDir string
	// ServerSettings lists the limits and retention settings the settings
	// page shows (archive and upload retention, upload limits, XEP-0157
	// contact addresses...), SaveServerSettings stores changed ones and
	// restarts the services; nil leaves the section out.
	ServerSettings     ServerSettingsFunc
	SaveServerSettings SaveServerSettingsFunc
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives logins, failures and changes (never passwords or
	// tokens); nil means slog.Default().
	Logger *slog.Logger
}

// Login throttle: failures per address and per account within the window.
const (
	loginFailures = 5
	loginWindow   = 15 * time.Minute
)

// SessionLifetime is how long a login lasts.
const SessionLifetime = 12 * time.Hour

// maxSessionsPerUser bounds the stored sessions of one account; beyond
// it, the one expiring soonest is dropped.
const maxSessionsPerUser = 50

// Settings keys (store settings table) of the web interface's own state.
const (
	// settingCSRFKey holds the CSRF HMAC key: 32 random bytes, hex,
	// generated once, so tokens stay valid across restarts.
	settingCSRFKey = "webui.csrf_key"
	// settingReachLast holds the last reachability verdict as JSON
	// (reachRecord).
	settingReachLast = "webui.reach_last"
)

// UI serves the web pages. Create with New, mount with Register.
type UI struct {
	cfg      Config
	now      func() time.Time
	log      *slog.Logger
	key      []byte // HMAC key of the CSRF tokens
	throttle *auth.Throttle

	// setUp is set once an administrator exists (setupGate); it is not
	// cleared again.
	setUp atomic.Bool

	reachRun  sync.Mutex // held while a reachability check runs
	reachMu   sync.Mutex // guards reachLast
	reachLast *reachResult
}

// session is one browser's login (or the wizard's, after step 1), kept
// in the store (store.WebSession) under the digest of its id.
type session struct {
	id      string // the cookie value; the store has only its digest
	user    string
	wizard  bool // created by the setup wizard (steps 2 to 5)
	expires time.Time
}

// New returns the UI for cfg. It panics without Domain, Store or Invites.
func New(cfg Config) *UI {
	if cfg.Domain == "" || cfg.Store == nil || cfg.Invites == nil {
		panic("webui: Domain, Store and Invites are required")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://" + cfg.Domain
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	u := &UI{cfg: cfg, now: cfg.Now, log: cfg.Logger}
	if u.now == nil {
		u.now = time.Now
	}
	if u.log == nil {
		u.log = slog.Default()
	}
	u.key = u.loadKey()
	u.reachLast = u.loadReach()
	u.throttle = auth.NewThrottle(loginFailures, loginWindow)
	u.throttle.SetClock(u.now)
	return u
}

// Mux is what Register mounts the pages on (*httpd.Server, *http.ServeMux).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register mounts every page on m.
func (u *UI) Register(m Mux) {
	h := func(f http.HandlerFunc) http.Handler { return u.secure(f) }
	m.Handle("GET "+CSSPath, http.HandlerFunc(u.css))
	m.Handle("GET /{$}", h(u.home))
	m.Handle("GET /invite/{token}", h(u.invitePage))
	m.Handle("POST /invite/{token}", h(u.inviteRegister))
	m.Handle("GET /setup", h(u.wizardGet))
	m.Handle("GET /setup/{step}", h(u.wizardGet))
	m.Handle("POST /setup", h(u.wizardAdmin))
	m.Handle("POST /setup/domain", h(u.wizardDomain))
	m.Handle("POST /setup/done", h(u.wizardInvite))
	m.Handle("POST /setup/reach", h(u.wizardReach))
	m.Handle("GET /admin/login", h(u.loginPage(true)))
	m.Handle("POST /admin/login", h(u.login(true)))
	m.Handle("POST /admin/logout", h(u.logout))
	m.Handle("GET /account/login", h(u.loginPage(false)))
	m.Handle("POST /account/login", h(u.login(false)))
	m.Handle("POST /account/logout", h(u.logout))
	m.Handle("GET /account", h(u.user(u.accountPage)))
	m.Handle("POST /account/password", h(u.user(u.accountPassword)))
	m.Handle("POST /account/export", h(u.user(u.accountExport)))
	m.Handle("POST /account/delete", h(u.user(u.accountDelete)))
	m.Handle("POST /account/invites/{action}", h(u.user(u.accountInvite)))
	m.Handle("GET /admin/{$}", h(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/invites", http.StatusSeeOther)
	}))
	m.Handle("GET /admin/invites", h(u.admin(u.invitesPage)))
	m.Handle("POST /admin/invites", h(u.admin(u.invitesCreate)))
	m.Handle("POST /admin/invites/revoke", h(u.admin(u.invitesRevoke)))
	m.Handle("GET /admin/users", h(u.admin(u.usersPage)))
	m.Handle("POST /admin/users/delete", h(u.admin(u.usersDelete)))
	m.Handle("POST /admin/users/undelete", h(u.admin(u.usersUndelete)))
	m.Handle("POST /admin/users/delete-now", h(u.admin(u.usersDeleteNow)))
	m.Handle("POST /admin/users/reset", h(u.admin(u.usersReset)))
	m.Handle("POST /admin/users/role", h(u.admin(u.usersRole)))
	m.Handle("GET /reset/{token}", h(u.resetPage))
	m.Handle("POST /reset/{token}", h(u.resetSubmit))
	m.Handle("GET /terms", h(u.textPage(SettingTerms, "Terms of service")))
	m.Handle("GET /privacy", h(u.textPage(SettingPrivacy, "Privacy policy")))
	m.Handle("GET /admin/settings", h(u.admin(u.settingsPage)))
	m.Handle("POST /admin/settings/registration", h(u.admin(u.settingsRegistration)))
	m.Handle("POST /admin/settings/server", h(u.admin(u.settingsServer)))
	m.Handle("POST /admin/settings/{text}", h(u.admin(u.settingsText)))
	m.Handle("GET /admin/system", h(u.admin(u.systemPage)))
	m.Handle("GET /admin/announce", h(u.admin(u.announcePage)))
	m.Handle("POST /admin/announce", h(u.admin(u.announce)))
	m.Handle("GET /admin/circles", h(u.admin(u.circlesPage)))
	m.Handle("POST /admin/circles/create", h(u.admin(u.circlesCreate)))
	m.Handle("POST /admin/circles/delete", h(u.admin(u.circlesDelete)))
	m.Handle("POST /admin/circles/join", h(u.admin(u.circlesJoin)))
	m.Handle("POST /admin/circles/leave", h(u.admin(u.circlesLeave)))
	m.Handle("POST /admin/circles/chat", h(u.admin(u.circlesChat)))
	m.Handle("GET /admin/backup", h(u.admin(u.backupPage)))
	m.Handle("POST /admin/backup", h(u.admin(u.backupDownload)))
	m.Handle("GET /admin/network", h(u.admin(u.networkPage)))
	m.Handle("POST /admin/network/check", h(u.admin(u.networkCheck)))
}

// Handler returns the pages on a mux of their own (for tests and tools).
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	u.Register(mux)
	return mux
}

// secure adds the headers every page gets: no scripts, no framing, no
// caching of pages that may show secrets; and until an administrator
// exists only the wizard answers (setupGate).
func (u *UI) secure(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if !u.setupGate(w, r) {
			return
		}
		f(w, r)
	})
}

// setupGate reports whether r may reach its page; if not it has answered.
// Until an administrator exists (store.HasAdmin), only the wizard is
// served (/setup and /setup/...: wizardGate applies its own rules, the
// local network among them; the style sheet is not behind secure): a
// client on the local network is sent to /setup (303), others get 503
// "Hearth is being set up". Once an administrator exists, that is kept
// and the store is no longer asked.
func (u *UI) setupGate(w http.ResponseWriter, r *http.Request) bool {
	if u.setUp.Load() || r.URL.Path == "/setup" || strings.HasPrefix(r.URL.Path, "/setup/") {
		return true
	}
	has, err := u.cfg.Store.HasAdmin(r.Context())
	switch {
	case err != nil:
		u.log.Error("web: reading roles failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return false
	case has:
		u.setUp.Store(true)
		return true
	case isLocal(r):
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return false
	}
	u.message(w, r, http.StatusServiceUnavailable, "Hearth is being set up", "This Hearth is not ready yet. Please come back later.")
	return false
}

func (u *UI) css(w http.ResponseWriter, r *http.Request) {
	b, _ := staticFS.ReadFile("static/hearth.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(b)
}

// render writes a component with status.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.Render(r.Context(), w); err != nil {
		u.log.Warn("rendering a page failed", "path", logPath(r), "err", err)
	}
}

// message renders a page with only a title and a sentence.
func (u *UI) message(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	u.render(w, r, status, messagePage(title, text))
}

// home sends a fresh appliance to the wizard, otherwise shows where to go.
func (u *UI) home(w http.ResponseWriter, r *http.Request) {
	if has, err := u.cfg.Store.HasAdmin(r.Context()); err == nil && !has && isLocal(r) {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	terms, privacy := u.legalLinks(r.Context())
	u.render(w, r, http.StatusOK, homePage(u.cfg.Domain, u.cfg.WebClientPath, terms, privacy))
}

// clientAddr is the request's source address (the TCP peer: Hearth is
// the server, no proxy header is trusted).
func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// isLocal reports whether the request comes from the local network:
// loopback, private (RFC 1918, RFC 4193) or link-local source addresses.
func isLocal(r *http.Request) bool {
	a := clientAddr(r)
	return a.IsValid() && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast())
}

// httpsURL is the HTTPS address of r's path on this host.
func (u *UI) httpsURL(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.cfg.HTTPSPort; p != 0 && p != 443 {
		host += ":" + strconv.Itoa(p)
	}
	return "https://" + host + r.URL.RequestURI()
}

// Cookies.
const (
	sessionCookie = "hearth_session"
	csrfCookie    = "hearth_csrf"
)

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (u *UI) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(maxAge.Seconds()),
	}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// loadKey returns the CSRF HMAC key kept in the store, generating it on
// the first start. If the store fails, the key is random for this process
// (forms then expire at a restart) and the failure is logged.
func (u *UI) loadKey() []byte {
	key := make([]byte, 32)
	rand.Read(key)
	v, err := u.cfg.Store.InitSetting(context.Background(), settingCSRFKey, hex.EncodeToString(key))
	if err == nil {
		if b, err2 := hex.DecodeString(v); err2 == nil && len(b) >= 32 {
			return b
		}
		err = errors.New("malformed stored key")
	}
	u.log.Error("web: reading the CSRF key failed; forms will expire at the next restart", "err", err)
	return key
}

// currentSession returns r's valid session, or nil (also when the store
// fails: that is logged).
func (u *UI) currentSession(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil
	}
	ws, err := u.cfg.Store.WebSessionByDigest(r.Context(), tokenDigest(c.Value), u.now())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			u.log.Error("web: reading a session failed", "err", err)
		}
		return nil
	}
	return &session{id: c.Value, user: ws.Username, wizard: ws.Wizard, expires: ws.Expires}
}

// startSession logs user in on this browser: a new session in the store
// (at most maxSessionsPerUser per account) and its cookie. A store failure
// is logged; the browser then simply is not logged in.
func (u *UI) startSession(w http.ResponseWriter, r *http.Request, user string, wizard bool) *session {
	now := u.now()
	s := &session{id: randomToken(), user: user, wizard: wizard, expires: now.Add(SessionLifetime)}
	err := u.cfg.Store.CreateWebSession(r.Context(), store.WebSession{
		Digest: tokenDigest(s.id), Username: user, Wizard: wizard, Created: now, Expires: s.expires,
	}, maxSessionsPerUser)
	if err != nil {
		u.log.Error("web: storing a session failed", "user", user, "err", err)
	}
	u.setCookie(w, r, sessionCookie, s.id, SessionLifetime)
	return s
}

// endSessions removes every session of user (after the account was
// deleted or locked) or, with id set, that one. Failures are logged.
func (u *UI) endSessions(user, id string) {
	ctx := context.Background()
	if id != "" {
		if err := u.cfg.Store.DeleteWebSession(ctx, tokenDigest(id)); err != nil {
			u.log.Error("web: ending a session failed", "err", err)
		}
	}
	if user != "" {
		if _, err := u.cfg.Store.DeleteWebSessions(ctx, user); err != nil {
			u.log.Error("web: ending the sessions of an account failed", "user", user, "err", err)
		}
	}
}

// csrfToken returns the token a form of this page carries: an HMAC of the
// session id, or before login of the CSRF cookie (set here if missing).
func (u *UI) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if s := u.currentSession(r); s != nil {
		return u.mac("session:" + s.id)
	}
	c, err := r.Cookie(csrfCookie)
	v := ""
	if err == nil && len(c.Value) == 64 {
		v = c.Value
	} else {
		v = randomToken()
		u.setCookie(w, r, csrfCookie, v, 24*time.Hour)
	}
	return u.mac("anon:" + v)
}

func (u *UI) mac(s string) string {
	m := hmac.New(sha256.New, u.key)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether a POST carries the right CSRF token; if not it
// has answered 403.
func (u *UI) checkCSRF(w http.ResponseWriter, r *http.Request) bool {
	got := r.PostFormValue("csrf")
	var want string
	if s := u.currentSession(r); s != nil {
		want = u.mac("session:" + s.id)
	} else if c, err := r.Cookie(csrfCookie); err == nil && c.Value != "" {
		want = u.mac("anon:" + c.Value)
	}
	if got == "" || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		u.log.Info("web: request without a valid CSRF token refused", "path", logPath(r), "ip", clientAddr(r))
		u.message(w, r, http.StatusForbidden, "Please try again", "This form expired or did not come from this site. Go back, reload the page and send it again.")
		return false
	}
	return true
}

// errorText turns a registration error into a sentence for the form.
func errorText(err error) string {
	switch {
	case errors.Is(err, invite.ErrInvalidUsername):
		return "That username is not allowed: use letters, digits, dots or dashes, without spaces."
	case errors.Is(err, invite.ErrUsernameTaken):
		return "That username is taken: please choose another one."
	case errors.Is(err, invite.ErrInvalidPassword):
		return "That password is not allowed: it must not be empty or contain control characters."
	case errors.Is(err, invite.ErrExpired):
		return "This invitation has expired."
	case errors.Is(err, invite.ErrUsedUp):
		return "This invitation has already been used."
	case errors.Is(err, invite.ErrRevoked):
		return "This invitation was revoked."
	case errors.Is(err, invite.ErrUnknown):
		return "This invitation does not exist."
	}
	return "Something went wrong on the server. Please try again later."
}

// ariaCurrent is the aria-current value of a navigation entry.
func ariaCurrent(current bool) string {
	if current {
		return "page"
	}
	return "false"
}

// statusClass is the CSS class of a step status.
func statusClass(ok bool) string {
	if ok {
		return "status ok"
	}
	return "status problem"
}

// logPath is r's path for the log, without an invitation or reset token
// (tokens are secrets and never logged).
func logPath(r *http.Request) string {
	for _, p := range []string{"/invite/", "/reset/"} {
		if strings.HasPrefix(r.URL.Path, p) {
			return p + "…"
		}
	}
	return r.URL.Path
}
