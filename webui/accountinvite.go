package webui

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/invite"
)

// accountInvites is the "Invite someone" section of the account page of a
// normal or admin account: members invite their own family (the rules of
// invite.Service.CreateFor).
type accountInvites struct {
	// Pending are the user's own invitations that can still be used.
	Pending []inviteRow
	// New is the invitation just created, with the QR code of its link
	// and its xmpp: URI; nil when none.
	New     *inviteRow
	QR, URI string
	// Circles are the circles the user belongs to, which the invitee may
	// join too.
	Circles []string
	// Failed: the list could not be read.
	Failed bool
}

// accountInvites gathers the section for s's user; newToken is an
// invitation just created, shown only when it is the user's and valid.
func (u *UI) accountInvites(r *http.Request, s *session, newToken string) *accountInvites {
	out := &accountInvites{}
	invs, err := u.cfg.Invites.ListFor(r.Context(), s.user)
	if err != nil {
		u.log.Error("web: listing a user's invitations failed", "user", s.user, "err", err)
		out.Failed = true
	}
	for _, inv := range invs {
		row := u.row(inv)
		if !row.Active {
			continue
		}
		out.Pending = append(out.Pending, row)
		if newToken != "" && inv.Token == newToken {
			nr := row
			out.New = &nr
			out.URI = invite.URI(u.cfg.Domain, inv.Token)
			out.QR, _ = qrSVG(row.Link, "QR code of the new invitation")
		}
	}
	circles, err := u.cfg.Invites.Circles(r.Context())
	if err != nil {
		u.log.Error("web: listing circles failed", "err", err)
	}
	for _, c := range circles {
		if slices.Contains(c.Members, s.user) {
			out.Circles = append(out.Circles, c.Name)
		}
	}
	return out
}

// accountInvite is POST /account/invites/{action}: "create" (invite
// someone) or "revoke" (take back one of one's own invitations).
func (u *UI) accountInvite(w http.ResponseWriter, r *http.Request, s *session) {
	switch r.PathValue("action") {
	case "create":
		u.accountInviteCreate(w, r, s)
	case "revoke":
		u.accountInviteRevoke(w, r, s)
	default:
		u.message(w, r, http.StatusNotFound, "Not found", "There is no such page.")
	}
}

// accountInviteCreate creates an invitation from the user, with kind
// (single|group: a group invitation has no use limit until it expires),
// expires (like "1d", "7d", "4w"), note and circle (any number: circles
// of the user's). The rules are invite.Service.CreateFor's: a limited
// account gets 403. On success it goes back to the account page showing
// the new invitation's link and QR code.
func (u *UI) accountInviteCreate(w http.ResponseWriter, r *http.Request, s *session) {
	o := invite.Options{Reusable: r.PostFormValue("kind") == "group", Note: strings.TrimSpace(r.PostFormValue("note"))}
	var err error
	if o.Expires, err = invite.ParseExpiry(r.PostFormValue("expires")); err != nil {
		u.showAccount(w, r, s, http.StatusBadRequest, "Choose how long the invitation is valid: one day to four weeks.", "")
		return
	}
	for _, c := range r.PostForm["circle"] {
		if c = strings.TrimSpace(c); c != "" {
			o.Circles = append(o.Circles, c)
		}
	}
	inv, err := u.cfg.Invites.CreateFor(r.Context(), s.user, o)
	switch {
	case errors.Is(err, invite.ErrNotAllowed):
		u.log.Info("web: invitation refused", "user", s.user, "reason", invite.Reason(err))
		u.showAccount(w, r, s, http.StatusForbidden, sentence(invite.Reason(err)), "")
		return
	case errors.Is(err, invite.ErrInvalidOptions):
		u.showAccount(w, r, s, http.StatusBadRequest, sentence(invite.Reason(err)), "")
		return
	case err != nil:
		u.log.Error("web: creating an invitation failed", "user", s.user, "err", err)
		u.showAccount(w, r, s, http.StatusInternalServerError, "The invitation could not be created.", "")
		return
	}
	http.Redirect(w, r, "/account?invite="+inv.Token+"#new-invite", http.StatusSeeOther)
}

// accountInviteRevoke revokes the invitation token if the user created
// it; anyone else's, or none, is 404 (invite.Service.RevokeFor).
func (u *UI) accountInviteRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	err := u.cfg.Invites.RevokeFor(r.Context(), s.user, r.PostFormValue("token"))
	if errors.Is(err, invite.ErrUnknown) {
		u.showAccount(w, r, s, http.StatusNotFound, "You have no such invitation.", "")
		return
	}
	if err != nil {
		u.log.Error("web: revoking an invitation failed", "user", s.user, "err", err)
		u.showAccount(w, r, s, http.StatusInternalServerError, "The invitation could not be revoked.", "")
		return
	}
	http.Redirect(w, r, "/account?done=revoked", http.StatusSeeOther)
}

// sentence capitalises text and ends it with a full stop.
func sentence(text string) string {
	if text == "" {
		return text
	}
	text = strings.ToUpper(text[:1]) + text[1:]
	if !strings.HasSuffix(text, ".") {
		text += "."
	}
	return text
}
