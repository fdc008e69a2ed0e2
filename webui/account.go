package webui

import (
	"errors"
	"net/http"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/pie"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"mellium.im/xmpp/stream"
)

// user wraps a page of the logged-in user's own account: HTTPS, a
// session, and the CSRF check of every POST.
func (u *UI) user(h adminHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s := u.loggedIn(w, r, "/account/login"); s != nil {
			h(w, r, s)
		}
	}
}

type accountView struct {
	JID, CSRF, Error, Notice string
	Admin                    bool
	// Grace is the grace period of a deletion in words, "" when at once.
	Grace string
	// Invites is the "Invite someone" section of a normal or admin
	// account; nil for a limited account (told to ask an administrator).
	Invites *accountInvites
}

func (u *UI) showAccount(w http.ResponseWriter, r *http.Request, s *session, status int, errText, notice string) {
	u.showAccountWith(w, r, s, status, errText, notice, "")
}

// showAccountWith is showAccount that also shows the user's invitation
// newToken, just created, to share (when it is theirs and still valid).
func (u *UI) showAccountWith(w http.ResponseWriter, r *http.Request, s *session, status int, errText, notice, newToken string) {
	role, _ := u.cfg.Store.Role(r.Context(), s.user)
	v := accountView{
		JID: s.user + "@" + u.cfg.Domain, CSRF: u.csrfToken(w, r), Error: errText, Notice: notice,
		Admin: role == store.RoleAdmin, Grace: graceWords(u.cfg.DeletionGrace),
	}
	if role == store.RoleNormal || role == store.RoleAdmin {
		v.Invites = u.accountInvites(r, s, newToken)
	}
	u.render(w, r, status, accountPage(v))
}

// accountPage is GET /account.
func (u *UI) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	notice := ""
	switch r.URL.Query().Get("done") {
	case "password":
		notice = "Your password is changed."
	case "revoked":
		notice = "The invitation is revoked: nobody can use it any more."
	}
	u.showAccountWith(w, r, s, http.StatusOK, "", notice, r.URL.Query().Get("invite"))
}

// checkPassword verifies the current password typed again for a change,
// answering with the page and an error when it is wrong.
func (u *UI) checkPassword(w http.ResponseWriter, r *http.Request, s *session) bool {
	_, cond := u.verify(r, s.user, r.PostFormValue("current"))
	switch cond {
	case "":
		return true
	case "temporary-auth-failure":
		u.showAccount(w, r, s, http.StatusTooManyRequests, "Too many failed attempts. Wait a few minutes, then try again.", "")
	default:
		u.showAccount(w, r, s, http.StatusUnauthorized, "Your current password is not right.", "")
	}
	return false
}

// accountPassword is POST /account/password with current, password,
// password2 and, to end every device's session, logout=1. The new keys
// replace the old ones and the FAST tokens are dropped (account
// .SetPassword), as with XEP-0077 §3.3 in a chat app.
func (u *UI) accountPassword(w http.ResponseWriter, r *http.Request, s *session) {
	if !u.checkPassword(w, r, s) {
		return
	}
	password := r.PostFormValue("password")
	switch {
	case password != r.PostFormValue("password2"):
		u.showAccount(w, r, s, http.StatusBadRequest, "The two new passwords are not the same.", "")
		return
	case password == "" || len(password) > invite.MaxPasswordBytes:
		u.showAccount(w, r, s, http.StatusBadRequest, errorText(invite.ErrInvalidPassword), "")
		return
	}
	err := account.SetPassword(r.Context(), u.cfg.Store, s.user, password)
	if errors.Is(err, auth.ErrInvalidPassword) {
		u.showAccount(w, r, s, http.StatusBadRequest, errorText(invite.ErrInvalidPassword), "")
		return
	}
	if err != nil {
		u.log.Error("web: changing a password failed", "err", err)
		u.showAccount(w, r, s, http.StatusInternalServerError, "The password could not be changed.", "")
		return
	}
	u.log.Info("web: password changed", "user", s.user)
	if r.PostFormValue("logout") != "" && u.cfg.Server != nil {
		u.cfg.Server.DisconnectUser(s.user, stream.Reset, "password changed")
	}
	http.Redirect(w, r, "/account?done=password", http.StatusSeeOther)
}

// accountExport is POST /account/export (archive=1 adds the message
// archive): the user's data as a XEP-0227 file to download.
func (u *UI) accountExport(w http.ResponseWriter, r *http.Request, s *session) {
	d := &download{w: w, contentType: "application/xml; charset=utf-8", filename: s.user + "@" + u.cfg.Domain + ".xml"}
	err := pie.ExportUser(r.Context(), u.cfg.Store, u.cfg.Domain, s.user, d, pie.Options{Archive: r.PostFormValue("archive") != ""})
	if err != nil {
		u.log.Error("web: exporting an account failed", "user", s.user, "err", err)
		u.failDownload(w, r, d, "Your data could not be exported.")
		return
	}
	u.log.Info("web: account exported", "user", s.user)
}

// accountDelete is POST /account/delete with current (the password) and
// confirm (the username typed again): the account is deleted like an
// administrator deletes it (locked now, gone after the grace period). The
// last administrator cannot delete their own account.
func (u *UI) accountDelete(w http.ResponseWriter, r *http.Request, s *session) {
	if r.PostFormValue("confirm") != s.user {
		u.showAccount(w, r, s, http.StatusBadRequest, "To delete your account, type your username ("+s.user+") in the confirmation box.", "")
		return
	}
	if !u.checkPassword(w, r, s) {
		return
	}
	due, err := u.DeleteAccount(r.Context(), s.user, s.user, false)
	if errors.Is(err, ErrLastAdmin) {
		u.showAccount(w, r, s, http.StatusConflict, "You are the only administrator: make someone else administrator (on the users page) before you delete your account.", "")
		return
	}
	if err != nil {
		u.log.Error("web: deleting an account failed", "err", err)
		u.showAccount(w, r, s, http.StatusInternalServerError, "Your account could not be deleted.", "")
		return
	}
	u.setCookie(w, r, sessionCookie, "", -1)
	if due.IsZero() {
		u.message(w, r, http.StatusOK, "Your account is deleted", "Your account and its data are gone. Thank you for chatting here.")
		return
	}
	u.message(w, r, http.StatusOK, "Your account will be deleted",
		"Your account is locked now and its data will be deleted in "+graceWords(u.cfg.DeletionGrace)+". If this was a mistake, ask your administrator to keep it before then.")
}
