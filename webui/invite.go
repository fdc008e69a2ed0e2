package webui

import (
	"errors"
	"net/http"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
)

// app is one client suggested on the landing page.
type app struct {
	Name, Platform, Store, URL string
}

// apps are the clients that understand XEP-0401 invitations (or at least
// in-band registration), per platform.
var apps = []app{
	{"Conversations", "Android", "F-Droid", "https://f-droid.org/packages/eu.siacs.conversations/"},
	{"Conversations", "Android", "Google Play", "https://play.google.com/store/apps/details?id=eu.siacs.conversations"},
	{"Monal", "iPhone, iPad and Mac", "App Store", "https://apps.apple.com/app/monal-free-xmpp-chat/id317711500"},
	{"Siskin IM", "iPhone and iPad", "App Store", "https://apps.apple.com/app/siskin-im/id1153516838"},
	{"Gajim", "Windows and Linux", "gajim.org", "https://gajim.org/download/"},
	{"Dino", "Linux", "dino.im", "https://dino.im/#download"},
}

// inviteView is what the landing page shows.
type inviteView struct {
	Domain, Inviter, Link, URI, QR, WebClient, CSRF string
	Apps                                            []app
	// Terms and Privacy: the pages /terms and /privacy exist.
	Terms, Privacy bool
	// Form fields and error of the web registration.
	Username, Error string
}

// lookupInvite checks the token of the request and, when it cannot be
// used, answers with a clear page: 404 for an unknown token, 410 Gone for
// an expired, used or revoked one.
func (u *UI) lookupInvite(w http.ResponseWriter, r *http.Request) (store.Invite, bool) {
	inv, err := u.cfg.Invites.Check(r.Context(), r.PathValue("token"))
	switch {
	case err == nil:
		return inv, true
	case errors.Is(err, invite.ErrUnknown):
		u.message(w, r, http.StatusNotFound, "Invitation not found",
			"This invitation link is not valid. Check that it was copied completely, or ask for a new one.")
	case errors.Is(err, invite.ErrExpired), errors.Is(err, invite.ErrUsedUp), errors.Is(err, invite.ErrRevoked):
		who := "the person who invited you"
		if inv.Inviter != "" {
			who = inv.Inviter
		}
		u.message(w, r, http.StatusGone, "This invitation can no longer be used", errorText(err)+" Ask "+who+" for a new one.")
	default:
		u.log.Error("web: reading an invitation failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
	}
	return store.Invite{}, false
}

// plainFromInternet redirects a plain-HTTP request from outside the local
// network to HTTPS (passwords are typed on these pages) and reports it.
func (u *UI) plainFromInternet(w http.ResponseWriter, r *http.Request) bool {
	if r.TLS != nil || isLocal(r) {
		return false
	}
	http.Redirect(w, r, u.httpsURL(r), http.StatusMovedPermanently)
	return true
}

func (u *UI) inviteView(w http.ResponseWriter, r *http.Request, inv store.Invite) inviteView {
	link := invite.Link(u.cfg.BaseURL, inv.Token)
	v := inviteView{
		Domain: u.cfg.Domain, Inviter: inv.Inviter, Link: link, URI: invite.URI(u.cfg.Domain, inv.Token),
		WebClient: u.cfg.WebClientPath, CSRF: u.csrfToken(w, r), Apps: apps,
	}
	if inv.Inviter != "" {
		v.Inviter = inv.Inviter + "@" + u.cfg.Domain
	}
	v.Terms, v.Privacy = u.legalLinks(r.Context())
	if svg, err := qrSVG(link, "QR code of this invitation: scan it with your phone's camera"); err == nil {
		v.QR = svg
	}
	return v
}

// invitePage is the public landing page GET /invite/{token} (XEP-0401 §4):
// which app to install, the xmpp: URI that opens the invitation in it, a QR
// code to continue on a phone, and the web registration form.
func (u *UI) invitePage(w http.ResponseWriter, r *http.Request) {
	if u.plainFromInternet(w, r) {
		return
	}
	inv, ok := u.lookupInvite(w, r)
	if !ok {
		return
	}
	u.render(w, r, http.StatusOK, invitePage(u.inviteView(w, r, inv)))
}

// inviteRegister is the web registration fallback: POST /invite/{token}
// with username, password and password2 creates the account through the
// same rules as XMPP registration (invite.Service.Redeem).
func (u *UI) inviteRegister(w http.ResponseWriter, r *http.Request) {
	if u.plainFromInternet(w, r) {
		return
	}
	if !u.checkCSRF(w, r) {
		return
	}
	inv, ok := u.lookupInvite(w, r)
	if !ok {
		return
	}
	username, password := r.PostFormValue("username"), r.PostFormValue("password")
	fail := func(status int, text string) {
		v := u.inviteView(w, r, inv)
		v.Username, v.Error = username, text
		u.render(w, r, status, invitePage(v))
	}
	if password != r.PostFormValue("password2") {
		fail(http.StatusBadRequest, "The two passwords are not the same.")
		return
	}
	user, _, err := u.cfg.Invites.Redeem(r.Context(), inv.Token, username, password, u.now())
	switch {
	case err == nil:
	case errors.Is(err, invite.ErrUsernameTaken):
		fail(http.StatusConflict, errorText(err))
		return
	case errors.Is(err, invite.ErrInvalidUsername), errors.Is(err, invite.ErrInvalidPassword):
		fail(http.StatusBadRequest, errorText(err))
		return
	case errors.Is(err, invite.ErrExpired), errors.Is(err, invite.ErrUsedUp), errors.Is(err, invite.ErrRevoked):
		u.message(w, r, http.StatusGone, "This invitation can no longer be used", errorText(err))
		return
	default:
		u.log.Error("web: registration failed", "err", err)
		fail(http.StatusInternalServerError, errorText(err))
		return
	}
	u.log.Info("web: account registered with an invitation", "user", user, "ip", clientAddr(r))
	u.render(w, r, http.StatusCreated, registeredPage(user+"@"+u.cfg.Domain, u.cfg.WebClientPath, apps))
}
