package webui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/upload"
	"mellium.im/xmpp/stream"
)

// PasswordResetLifetime is how long a password reset link works.
const PasswordResetLifetime = 72 * time.Hour

// jobInterval is how often the background job deletes the accounts whose
// grace period ended and prunes expired reset links.
const jobInterval = time.Hour

// userRow is one account in the admin list.
type userRow struct {
	Username, JID, Role, Created, LastSeen string
	Self, Online                           bool
	// DeleteOn is the day a marked account goes, "" when not marked.
	DeleteOn, DeleteBy string
}

type usersView struct {
	adminView
	Rows []userRow
	// Grace is the grace period in words, "" when deletion is immediate.
	Grace string
	// Reset is a password reset link just made, for ResetUser.
	Reset, ResetUser, ResetQR, ResetUntil string
}

// graceWords says the grace period in days or hours.
func graceWords(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	if d >= 48*time.Hour {
		return humanDuration(d.Round(24 * time.Hour))
	}
	return humanDuration(d)
}

func (u *UI) usersPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	user, notice := q.Get("user"), ""
	switch q.Get("done") {
	case "deleted":
		notice = user + " was deleted."
	case "marked":
		notice = user + " is locked and will be deleted in " + graceWords(u.cfg.DeletionGrace) + ". Until then you can undo this."
	case "kept":
		notice = user + " is kept: the deletion was cancelled."
	case "role":
		notice = user + " is now " + roleWords(q.Get("role")) + "."
	}
	u.showUsers(w, r, s, http.StatusOK, usersView{adminView: adminView{Notice: notice}})
}

// showUsers renders the users page; v carries the error, notice or reset
// link to show.
func (u *UI) showUsers(w http.ResponseWriter, r *http.Request, s *session, status int, v usersView) {
	ctx := r.Context()
	accts, err := u.cfg.Store.Accounts(ctx)
	var roles map[string]string
	var dels []store.AccountDeletion
	if err == nil {
		roles, err = u.cfg.Store.Roles(ctx)
	}
	if err == nil {
		dels, err = u.cfg.Store.AccountDeletions(ctx)
	}
	if err != nil {
		u.log.Error("web: listing accounts failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	marked := map[string]store.AccountDeletion{}
	for _, d := range dels {
		marked[d.Username] = d
	}
	av := u.adminView(w, r, s)
	av.Error, av.Notice = v.Error, v.Notice
	v.adminView = av
	v.Grace = graceWords(u.cfg.DeletionGrace)
	for _, a := range accts {
		role := roles[a.Username]
		if role == "" {
			role = store.RoleNormal
		}
		row := userRow{
			Username: a.Username, JID: a.Username + "@" + u.cfg.Domain, Role: role,
			Created: a.Created.Format("2006-01-02"), LastSeen: "never", Self: a.Username == s.user,
		}
		if !a.LastLogout.IsZero() {
			row.LastSeen = a.LastLogout.Format("2006-01-02 15:04")
		}
		if u.cfg.Server != nil && len(u.cfg.Server.Sessions(a.Username)) > 0 {
			row.Online, row.LastSeen = true, "now"
		}
		if d, ok := marked[a.Username]; ok {
			row.DeleteOn, row.DeleteBy = d.Due.Format("2 January 2006 15:04"), d.RequestedBy
		}
		v.Rows = append(v.Rows, row)
	}
	u.render(w, r, status, usersPage(v))
}

// deleteAccountNow deletes username with all its data: its uploaded files
// (with Config.UploadDir), then the account (every table follows), then
// its live XMPP streams (stream error not-authorized, RFC 6120 §4.9.3.12)
// and web sessions.
func (u *UI) deleteAccountNow(ctx context.Context, username, by string) error {
	if u.cfg.UploadDir != "" {
		if _, _, err := upload.DeleteUserFiles(ctx, u.cfg.Store, u.cfg.UploadDir, username); err != nil {
			return err
		}
	}
	if err := u.cfg.Store.DeleteAccount(ctx, username); err != nil {
		return err
	}
	if u.cfg.Server != nil {
		u.cfg.Server.DisconnectUser(username, stream.NotAuthorized, "account deleted")
	}
	if u.cfg.AccountDeleted != nil {
		u.cfg.AccountDeleted(ctx, username)
	}
	u.endSessions(username, "")
	u.log.Info("web: account deleted", "user", username, "by", by)
	return nil
}

// usersDelete: POST /admin/users/delete with username and confirm equal to
// it. An administrator cannot delete their own account here.
func (u *UI) usersDelete(w http.ResponseWriter, r *http.Request, s *session) {
	user := r.PostFormValue("username")
	fail := func(status int, text string) {
		u.showUsers(w, r, s, status, usersView{adminView: adminView{Error: text}})
	}
	switch {
	case user == s.user:
		fail(http.StatusBadRequest, "You cannot delete your own account here.")
		return
	case r.PostFormValue("confirm") != user:
		fail(http.StatusBadRequest, "To delete "+user+", type the username again in the confirmation box.")
		return
	}
	due, err := u.DeleteAccount(r.Context(), user, s.user, false)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fail(http.StatusNotFound, "No such account.")
		return
	case errors.Is(err, store.ErrExists):
		fail(http.StatusConflict, user+" is already marked for deletion.")
		return
	case errors.Is(err, ErrLastAdmin):
		fail(http.StatusConflict, user+" is the only administrator: make someone else administrator first.")
		return
	case err != nil:
		u.log.Error("web: deleting an account failed", "err", err)
		fail(http.StatusInternalServerError, "The account could not be deleted.")
		return
	}
	done := "deleted"
	if !due.IsZero() {
		done = "marked"
	}
	http.Redirect(w, r, "/admin/users?done="+done+"&user="+url.QueryEscape(user), http.StatusSeeOther)
}

// usersUndelete: POST /admin/users/undelete with username cancels a
// pending deletion and unlocks the account.
func (u *UI) usersUndelete(w http.ResponseWriter, r *http.Request, s *session) {
	user := r.PostFormValue("username")
	if err := u.Undelete(r.Context(), user, s.user); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			u.showUsers(w, r, s, http.StatusNotFound, usersView{adminView: adminView{Error: "That account is not marked for deletion."}})
			return
		}
		u.log.Error("web: cancelling a deletion failed", "err", err)
		u.showUsers(w, r, s, http.StatusInternalServerError, usersView{adminView: adminView{Error: "The deletion could not be cancelled."}})
		return
	}
	http.Redirect(w, r, "/admin/users?done=kept&user="+url.QueryEscape(user), http.StatusSeeOther)
}

// usersDeleteNow: POST /admin/users/delete-now with username deletes an
// account already marked for deletion without waiting for the grace
// period.
func (u *UI) usersDeleteNow(w http.ResponseWriter, r *http.Request, s *session) {
	user := r.PostFormValue("username")
	dels, err := u.cfg.Store.AccountDeletions(r.Context())
	marked := false
	for _, d := range dels {
		marked = marked || d.Username == user
	}
	if err == nil && !marked {
		u.showUsers(w, r, s, http.StatusNotFound, usersView{adminView: adminView{Error: "Only an account marked for deletion can be deleted at once."}})
		return
	}
	if err == nil {
		_, err = u.DeleteAccount(r.Context(), user, s.user, true)
	}
	if err != nil {
		u.log.Error("web: deleting an account failed", "err", err)
		u.showUsers(w, r, s, http.StatusInternalServerError, usersView{adminView: adminView{Error: "The account could not be deleted."}})
		return
	}
	http.Redirect(w, r, "/admin/users?done=deleted&user="+url.QueryEscape(user), http.StatusSeeOther)
}

// roleChoices lists the roles in the order the role form offers them.
var roleChoices = []string{store.RoleLimited, store.RoleNormal, store.RoleAdmin}

// roleWords describes a role for the users page.
func roleWords(role string) string {
	switch role {
	case store.RoleLimited:
		return "limited (chats, cannot invite)"
	case store.RoleNormal:
		return "a normal member"
	case store.RoleAdmin:
		return "an administrator"
	}
	return role
}

// roleLabel names a role in the role form.
func roleLabel(role string) string {
	if role == store.RoleAdmin {
		return "administrator"
	}
	return role
}

// usersRole is POST /admin/users/role with username and role (limited,
// normal or admin): SetRole. Demoting the last administrator is refused
// with a form message.
func (u *UI) usersRole(w http.ResponseWriter, r *http.Request, s *session) {
	user, role := r.PostFormValue("username"), r.PostFormValue("role")
	fail := func(status int, text string) {
		u.showUsers(w, r, s, status, usersView{adminView: adminView{Error: text}})
	}
	err := u.SetRole(r.Context(), user, role, s.user)
	switch {
	case errors.Is(err, ErrInvalidRole):
		fail(http.StatusBadRequest, "Choose limited, normal or administrator.")
		return
	case errors.Is(err, store.ErrNotFound):
		fail(http.StatusNotFound, "No such account.")
		return
	case errors.Is(err, ErrLastAdmin):
		fail(http.StatusConflict, user+" is the only administrator: make someone else administrator first.")
		return
	case err != nil:
		u.log.Error("web: changing a role failed", "err", err)
		fail(http.StatusInternalServerError, "The role could not be changed.")
		return
	}
	if user == s.user && role != store.RoleAdmin {
		// No admin pages any more: the account's own page.
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/admin/users?done=role&user="+url.QueryEscape(user)+"&role="+url.QueryEscape(role), http.StatusSeeOther)
}

// tokenDigest is the stored form of a reset token: hex SHA-256.
func tokenDigest(token string) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:])
}

// resetLink is the public address of a reset token.
func (u *UI) resetLink(token string) string { return u.cfg.BaseURL + "/reset/" + token }

// usersReset: POST /admin/users/reset with username makes a one-time
// password reset link (valid PasswordResetLifetime) and shows it once,
// with a QR code, for the administrator to give to the user.
func (u *UI) usersReset(w http.ResponseWriter, r *http.Request, s *session) {
	user := r.PostFormValue("username")
	link, expires, err := u.ResetLink(r.Context(), user, s.user)
	if errors.Is(err, store.ErrNotFound) {
		u.showUsers(w, r, s, http.StatusNotFound, usersView{adminView: adminView{Error: "No such account (or it is marked for deletion)."}})
		return
	}
	if err != nil {
		u.log.Error("web: creating a reset link failed", "err", err)
		u.showUsers(w, r, s, http.StatusInternalServerError, usersView{adminView: adminView{Error: "The link could not be created."}})
		return
	}
	v := usersView{Reset: link, ResetUser: user + "@" + u.cfg.Domain, ResetUntil: expires.Format("2 January 2006 15:04")}
	v.ResetQR, _ = qrSVG(v.Reset, "QR code of the password reset link")
	u.showUsers(w, r, s, http.StatusOK, v)
}

// resetView is the public password reset page.
type resetView struct {
	JID, CSRF, Error string
}

// lookupReset finds the reset link of the request, answering with a clear
// page (410 Gone) when it is unknown, used or expired.
func (u *UI) lookupReset(w http.ResponseWriter, r *http.Request) (store.PasswordReset, bool) {
	token := r.PathValue("token")
	var pr store.PasswordReset
	err := store.ErrNotFound
	if len(token) <= 64 {
		pr, err = u.cfg.Store.PasswordResetByDigest(r.Context(), tokenDigest(token))
	}
	switch {
	case err == nil && u.now().Before(pr.Expires):
		return pr, true
	case err == nil || errors.Is(err, store.ErrNotFound):
		u.message(w, r, http.StatusGone, "This link can no longer be used",
			"This password link is not valid: it was used already, has expired, or was not copied completely. Ask your administrator for a new one.")
	default:
		u.log.Error("web: reading a reset link failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
	}
	return store.PasswordReset{}, false
}

// resetPage is GET /reset/{token}: the form for a new password.
func (u *UI) resetPage(w http.ResponseWriter, r *http.Request) {
	if u.plainFromInternet(w, r) {
		return
	}
	pr, ok := u.lookupReset(w, r)
	if !ok {
		return
	}
	u.render(w, r, http.StatusOK, resetPage(resetView{JID: pr.Username + "@" + u.cfg.Domain, CSRF: u.csrfToken(w, r)}))
}

// resetSubmit is POST /reset/{token} with password and password2: sets
// the password, spends every reset link of the account and ends its
// streams (reset, RFC 6120 §4.9.3.16: its credentials changed).
func (u *UI) resetSubmit(w http.ResponseWriter, r *http.Request) {
	if u.plainFromInternet(w, r) || !u.checkCSRF(w, r) {
		return
	}
	pr, ok := u.lookupReset(w, r)
	if !ok {
		return
	}
	password := r.PostFormValue("password")
	fail := func(status int, text string) {
		u.render(w, r, status, resetPage(resetView{JID: pr.Username + "@" + u.cfg.Domain, CSRF: u.csrfToken(w, r), Error: text}))
	}
	if password != r.PostFormValue("password2") {
		fail(http.StatusBadRequest, "The two passwords are not the same.")
		return
	}
	if password == "" || len(password) > invite.MaxPasswordBytes {
		fail(http.StatusBadRequest, errorText(invite.ErrInvalidPassword))
		return
	}
	keys, err := account.Keys(password)
	if err != nil {
		fail(http.StatusBadRequest, errorText(invite.ErrInvalidPassword))
		return
	}
	user, err := u.cfg.Store.UsePasswordReset(r.Context(), pr.Digest, u.now(), keys)
	if errors.Is(err, store.ErrNotFound) {
		u.message(w, r, http.StatusGone, "This link can no longer be used", "It was used already or has expired. Ask your administrator for a new one.")
		return
	}
	if err != nil {
		u.log.Error("web: setting a password from a reset link failed", "err", err)
		fail(http.StatusInternalServerError, errorText(err))
		return
	}
	if u.cfg.Server != nil {
		u.cfg.Server.DisconnectUser(user, stream.Reset, "password changed")
	}
	u.endSessions(user, "")
	u.log.Info("web: password set with a reset link", "user", user, "ip", clientAddr(r))
	u.message(w, r, http.StatusOK, "Password changed", "The password of "+user+"@"+u.cfg.Domain+" is changed. Log in with it in your chat app.")
}

// runJobs deletes the accounts whose grace period ended and prunes the
// expired reset links and web sessions.
func (u *UI) runJobs(ctx context.Context) {
	due, err := u.cfg.Store.DueAccountDeletions(ctx, u.now())
	if err != nil {
		u.log.Warn("web: listing due account deletions failed", "err", err)
	}
	for _, d := range due {
		if err := u.deleteAccountNow(ctx, d.Username, d.RequestedBy); err != nil && !errors.Is(err, store.ErrNotFound) {
			u.log.Warn("web: deleting an account failed", "user", d.Username, "err", err)
		}
	}
	if _, err := u.cfg.Store.PrunePasswordResets(ctx, u.now()); err != nil {
		u.log.Warn("web: pruning reset links failed", "err", err)
	}
	if _, err := u.cfg.Store.PruneWebSessions(ctx, u.now()); err != nil {
		u.log.Warn("web: pruning expired sessions failed", "err", err)
	}
}

// Start runs the background job (deletions whose grace period ended,
// expired reset links and web sessions) now and every hour until ctx ends; the returned
// channel closes when it stopped. Fits serve's job list.
func (u *UI) Start(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(jobInterval)
		defer t.Stop()
		for {
			u.runJobs(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return done
}
