package webui

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
)

// credentials adapts the store to auth's credential lookup.
type credentials struct{ st *store.Store }

func (c credentials) Credential(ctx context.Context, username, hash string) (auth.Credential, error) {
	k, err := c.st.Credentials(ctx, username, hash)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Credential{}, auth.ErrUnknownUser
	}
	if err != nil {
		return auth.Credential{}, err
	}
	return auth.Credential{Hash: k.Hash, Salt: k.Salt, Iterations: k.Iterations, StoredKey: k.StoredKey, ServerKey: k.ServerKey}, nil
}

// noChallenges is the transport of a PLAIN exchange with its initial
// response: PLAIN has no challenges.
type noChallenges struct{}

func (noChallenges) Challenge([]byte) error    { return auth.ErrMalformedRequest }
func (noChallenges) Response() ([]byte, error) { return nil, auth.ErrMalformedRequest }

// verify checks username and password as SASL PLAIN over the XMPP
// streams would (RFC 4616; the same normalisation, stored SCRAM keys,
// timing for unknown users and throttle), returning the normalised
// localpart and the failure condition ("" on success).
func (u *UI) verify(r *http.Request, username, password string) (string, string) {
	a := auth.NewAuthenticator(auth.Options{
		Source: credentials{u.cfg.Store}, Domain: u.cfg.Domain, Throttle: u.throttle,
		RemoteIP: clientAddr(r), Logger: u.log,
	})
	if i := strings.LastIndexByte(username, '@'); i >= 0 && strings.EqualFold(username[i+1:], u.cfg.Domain) {
		username = username[:i]
	}
	msg := "\x00" + username + "\x00" + password
	out, err := a.Authenticate(r.Context(), auth.Request{
		Mechanism: "PLAIN", Initial: base64.StdEncoding.EncodeToString([]byte(msg)), HasInitial: true,
		Transport: noChallenges{},
	})
	if err != nil {
		return "", "temporary-auth-failure"
	}
	return out.User, out.Condition
}

// requireTLS redirects plain-HTTP requests to HTTPS and reports it.
func (u *UI) requireTLS(w http.ResponseWriter, r *http.Request) bool {
	if r.TLS != nil {
		return false
	}
	if r.Method != http.MethodGet {
		u.message(w, r, http.StatusForbidden, "Use HTTPS", "The administration pages only work over HTTPS.")
		return true
	}
	http.Redirect(w, r, u.httpsURL(r), http.StatusMovedPermanently)
	return true
}

type loginView struct {
	CSRF, Username, Error string
	// Admin: the administrators' form (/admin/login), else the users'
	// (/account/login).
	Admin bool
}

// loginPage is GET /admin/login (admin) or /account/login.
func (u *UI) loginPage(admin bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if u.requireTLS(w, r) {
			return
		}
		u.render(w, r, http.StatusOK, loginPage(loginView{CSRF: u.csrfToken(w, r), Admin: admin}))
	}
}

// login is POST /admin/login (admin: only administrators get a session)
// or /account/login (any account that is not locked), with username
// (localpart or bare JID) and password.
func (u *UI) login(admin bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if u.requireTLS(w, r) || !u.checkCSRF(w, r) {
			return
		}
		username := r.PostFormValue("username")
		user, cond := u.verify(r, username, r.PostFormValue("password"))
		fail := func(status int, text string) {
			u.render(w, r, status, loginPage(loginView{CSRF: u.csrfToken(w, r), Username: username, Error: text, Admin: admin}))
		}
		switch cond {
		case "":
		case "temporary-auth-failure":
			fail(http.StatusTooManyRequests, "Too many failed attempts. Wait a few minutes, then try again.")
			return
		default:
			fail(http.StatusUnauthorized, "Wrong username or password.")
			return
		}
		next := "/account"
		if admin {
			role, err := u.cfg.Store.Role(r.Context(), user)
			if err != nil || role != store.RoleAdmin {
				u.log.Info("web: login refused: not an administrator", "user", user, "ip", clientAddr(r))
				fail(http.StatusForbidden, "This account is not an administrator of "+u.cfg.Domain+".")
				return
			}
			next = "/admin/invites"
		}
		if old := u.currentSession(r); old != nil {
			u.endSessions("", old.id)
		}
		u.startSession(w, r, user, false)
		u.log.Info("web: logged in", "user", user, "admin_page", admin, "ip", clientAddr(r))
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// logout is POST /admin/logout or /account/logout: ends this browser's
// session and goes back to the matching login page.
func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	if !u.checkCSRF(w, r) {
		return
	}
	if s := u.currentSession(r); s != nil {
		u.endSessions("", s.id)
	}
	u.setCookie(w, r, sessionCookie, "", -1)
	if strings.HasPrefix(r.URL.Path, "/account/") {
		http.Redirect(w, r, "/account/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
}

// adminView is what every admin page shows around its content.
type adminView struct {
	Domain, User, CSRF, Error, Notice string
}

func (u *UI) adminView(w http.ResponseWriter, r *http.Request, s *session) adminView {
	return adminView{Domain: u.cfg.Domain, User: s.user, CSRF: u.csrfToken(w, r)}
}

// loggedIn is the gate of every page behind a login: HTTPS, a current
// session (a GET without one is sent to loginPath, a POST refused) and the
// CSRF token of a POST. It returns the session, or nil when it has answered.
func (u *UI) loggedIn(w http.ResponseWriter, r *http.Request, loginPath string) *session {
	if u.requireTLS(w, r) {
		return nil
	}
	s := u.currentSession(r)
	if s == nil {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, loginPath, http.StatusSeeOther)
		} else {
			u.message(w, r, http.StatusForbidden, "Please log in", "Your session has ended: log in again.")
		}
		return nil
	}
	if r.Method == http.MethodPost && !u.checkCSRF(w, r) {
		return nil
	}
	return s
}

// adminHandler is a page for a logged-in administrator.
type adminHandler func(w http.ResponseWriter, r *http.Request, s *session)

// admin wraps an admin page: HTTPS, a session of an account that is still
// an administrator, and the CSRF check of every POST.
func (u *UI) admin(h adminHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := u.loggedIn(w, r, "/admin/login")
		if s == nil {
			return
		}
		if role, err := u.cfg.Store.Role(r.Context(), s.user); err != nil || role != store.RoleAdmin {
			u.message(w, r, http.StatusForbidden, "Not an administrator", "This account does not administer the server. Your own account's page is at /account.")
			return
		}
		h(w, r, s)
	}
}

// inviteRow is one invitation in the admin list.
type inviteRow struct {
	Token, Link, Status, Uses, Role, Expires, Circles, Note, UsedBy string
	Active                                                          bool
}

type invitesView struct {
	Domain, User, CSRF, Error string
	Rows                      []inviteRow
	// New is the invitation just created, with its QR code.
	New *inviteRow
	QR  string
	URI string
}

func describeUses(inv store.Invite) string {
	switch {
	case inv.MaxUses == 1:
		return "single use"
	case inv.MaxUses == 0:
		return strconv.Itoa(inv.Uses) + " used, no limit"
	default:
		return strconv.Itoa(inv.Uses) + " of " + strconv.Itoa(inv.MaxUses) + " used"
	}
}

func (u *UI) row(inv store.Invite) inviteRow {
	status := "valid"
	err := invite.Status(inv, u.now())
	switch {
	case errors.Is(err, invite.ErrRevoked):
		status = "revoked"
	case errors.Is(err, invite.ErrExpired):
		status = "expired"
	case errors.Is(err, invite.ErrUsedUp):
		status = "used"
	}
	var used []string
	for _, x := range inv.UsedBy {
		used = append(used, x.Username)
	}
	return inviteRow{
		Token: inv.Token, Link: invite.Link(u.cfg.BaseURL, inv.Token), Status: status, Uses: describeUses(inv),
		Role: inv.Role, Expires: inv.Expires.Format("2006-01-02 15:04 MST"), Circles: strings.Join(inv.Circles, ", "),
		Note: inv.Note, UsedBy: strings.Join(used, ", "), Active: err == nil,
	}
}

func (u *UI) invitesPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.showInvites(w, r, s, http.StatusOK, "", r.URL.Query().Get("new"))
}

func (u *UI) showInvites(w http.ResponseWriter, r *http.Request, s *session, status int, errText, newToken string) {
	invs, err := u.cfg.Invites.List(r.Context())
	if err != nil {
		u.log.Error("web: listing invitations failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	v := invitesView{Domain: u.cfg.Domain, User: s.user, CSRF: u.csrfToken(w, r), Error: errText}
	for _, inv := range invs {
		row := u.row(inv)
		v.Rows = append(v.Rows, row)
		if newToken != "" && inv.Token == newToken {
			nr := row
			v.New = &nr
			v.URI = invite.URI(u.cfg.Domain, inv.Token)
			v.QR, _ = qrSVG(row.Link, "QR code of the new invitation")
		}
	}
	u.render(w, r, status, invitesPage(v))
}

// invitesCreate: POST /admin/invites with kind (single|group), uses,
// expires (1h..4w), role, circles (comma-separated) and note.
func (u *UI) invitesCreate(w http.ResponseWriter, r *http.Request, s *session) {
	o := invite.Options{Reusable: r.PostFormValue("kind") == "group", Role: r.PostFormValue("role"),
		Note: strings.TrimSpace(r.PostFormValue("note")), Inviter: s.user}
	var err error
	if o.Expires, err = invite.ParseExpiry(r.PostFormValue("expires")); err != nil {
		u.showInvites(w, r, s, http.StatusBadRequest, "Choose a validity between one hour and four weeks.", "")
		return
	}
	if v := strings.TrimSpace(r.PostFormValue("uses")); v != "" && o.Reusable {
		if o.MaxUses, err = strconv.Atoi(v); err != nil {
			u.showInvites(w, r, s, http.StatusBadRequest, "The number of uses must be a number.", "")
			return
		}
	}
	for _, c := range strings.Split(r.PostFormValue("circles"), ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.Circles = append(o.Circles, c)
		}
	}
	inv, err := u.cfg.Invites.Create(r.Context(), o)
	if err != nil {
		if errors.Is(err, invite.ErrInvalidOptions) {
			u.showInvites(w, r, s, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "invite: invalid options: "), "")
			return
		}
		u.log.Error("web: creating an invitation failed", "err", err)
		u.showInvites(w, r, s, http.StatusInternalServerError, "The invitation could not be created.", "")
		return
	}
	http.Redirect(w, r, "/admin/invites?new="+inv.Token, http.StatusSeeOther)
}

func (u *UI) invitesRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	if err := u.cfg.Invites.Revoke(r.Context(), r.PostFormValue("token")); err != nil {
		u.showInvites(w, r, s, http.StatusNotFound, "No such invitation.", "")
		return
	}
	http.Redirect(w, r, "/admin/invites", http.StatusSeeOther)
}

// loginAction is where a login form posts.
func loginAction(admin bool) string {
	if admin {
		return "/admin/login"
	}
	return "/account/login"
}
