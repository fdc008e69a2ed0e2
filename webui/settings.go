package webui

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Settings keys of the texts the administrator writes on the settings page
// (store settings table).
const (
	// SettingWelcome is the message sent to every new account.
	SettingWelcome = "web-welcome-message"
	// SettingTerms is the terms of service, served at /terms.
	SettingTerms = "web-terms"
	// SettingPrivacy is the privacy policy, served at /privacy.
	SettingPrivacy = "web-privacy"
)

// Limits on those texts, in bytes.
const (
	MaxWelcomeBytes = 4000
	MaxPageBytes    = 32000
)

// setting returns a stored setting, "" when unset or unreadable.
func (u *UI) setting(ctx context.Context, key string) string {
	v, err := u.cfg.Store.Setting(ctx, key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		u.log.Warn("web: reading a setting failed", "key", key, "err", err)
	}
	return v
}

// validText checks a text typed by the administrator: UTF-8 within max
// bytes, no control characters other than line breaks and tabs.
func validText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// normalizeText trims a textarea's value and unifies line breaks.
func normalizeText(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
}

// Welcome sends the welcome message (the SettingWelcome text, if any) to
// the new account username as a normal message from the server's domain
// (RFC 6121 §5.2.2; it waits in offline storage until the first login).
// Wire it to invite.Config.Registered. It does nothing without a Server.
func (u *UI) Welcome(ctx context.Context, username string) {
	text := u.setting(ctx, SettingWelcome)
	if text == "" || u.cfg.Server == nil {
		return
	}
	u.sendNotice(ctx, username, "Welcome to "+u.cfg.Domain, text, "welcome")
}

// sendNotice routes a message from the server's domain to username's bare
// JID: to its available devices, else to offline storage.
func (u *UI) sendNotice(ctx context.Context, username, subject, body, idPrefix string) {
	m := xmlel.New("jabber:client", "message", "from", u.cfg.Domain, "to", username+"@"+u.cfg.Domain,
		"id", idPrefix+"-"+randomToken()[:16])
	if subject != "" {
		m.Add(xmlel.New("jabber:client", "subject").AddText(subject))
	}
	m.Add(xmlel.New("jabber:client", "body").AddText(body))
	u.cfg.Server.Route(ctx, m)
}

// textParagraphs splits a stored text into paragraphs (blank lines) of
// lines, for display without any markup.
func textParagraphs(s string) [][]string {
	var out [][]string
	for _, p := range strings.Split(s, "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.Split(p, "\n"))
		}
	}
	return out
}

type settingsView struct {
	adminView
	Open                    bool
	Welcome, Terms, Privacy string
	Facts                   []Fact
}

func (u *UI) settingsPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.showSettings(w, r, s, http.StatusOK, "", r.URL.Query().Get("saved") != "")
}

func (u *UI) showSettings(w http.ResponseWriter, r *http.Request, s *session, status int, errText string, saved bool) {
	ctx := r.Context()
	v := settingsView{
		adminView: u.adminView(w, r, s), Open: u.cfg.Invites.Open(ctx),
		Welcome: u.setting(ctx, SettingWelcome), Terms: u.setting(ctx, SettingTerms), Privacy: u.setting(ctx, SettingPrivacy),
		Facts: u.cfg.Facts,
	}
	v.Error = errText
	if saved {
		v.Notice = "Saved."
	}
	u.render(w, r, status, settingsPage(v))
}

// settingsRegistration is POST /admin/settings/registration with policy
// "open" or "invite".
func (u *UI) settingsRegistration(w http.ResponseWriter, r *http.Request, s *session) {
	policy := r.PostFormValue("policy")
	if policy != "open" && policy != "invite" {
		u.showSettings(w, r, s, http.StatusBadRequest, "Choose who may create accounts.", false)
		return
	}
	if err := u.cfg.Invites.SetOpen(r.Context(), policy == "open"); err != nil {
		u.log.Error("web: saving the registration policy failed", "err", err)
		u.showSettings(w, r, s, http.StatusInternalServerError, "The setting could not be saved.", false)
		return
	}
	u.log.Info("web: registration policy changed", "policy", policy, "by", s.user)
	http.Redirect(w, r, "/admin/settings?saved=1#registration", http.StatusSeeOther)
}

// settingsText is POST /admin/settings/{text} (welcome, terms, privacy)
// with the text; an empty text removes it.
func (u *UI) settingsText(w http.ResponseWriter, r *http.Request, s *session) {
	var key string
	max := MaxPageBytes
	switch name := r.PathValue("text"); name {
	case "welcome":
		key, max = SettingWelcome, MaxWelcomeBytes
	case "terms":
		key = SettingTerms
	case "privacy":
		key = SettingPrivacy
	default:
		u.message(w, r, http.StatusNotFound, "Not found", "There is no such setting.")
		return
	}
	text := normalizeText(r.PostFormValue("text"))
	if !validText(text, max) {
		u.showSettings(w, r, s, http.StatusBadRequest, "That text is too long or contains characters that are not allowed.", false)
		return
	}
	if err := u.cfg.Store.SetSetting(r.Context(), key, text); err != nil {
		u.log.Error("web: saving a setting failed", "key", key, "err", err)
		u.showSettings(w, r, s, http.StatusInternalServerError, "The text could not be saved.", false)
		return
	}
	u.log.Info("web: text changed", "key", key, "by", s.user)
	http.Redirect(w, r, "/admin/settings?saved=1#"+r.PathValue("text"), http.StatusSeeOther)
}

// textPage serves /terms and /privacy from the stored texts; 404 when the
// administrator wrote none.
func (u *UI) textPage(key, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		text := u.setting(r.Context(), key)
		if text == "" {
			u.message(w, r, http.StatusNotFound, title, "The administrator of "+u.cfg.Domain+" has not published this page.")
			return
		}
		u.render(w, r, http.StatusOK, textPage(title, u.cfg.Domain, textParagraphs(text)))
	}
}

// legalLinks reports which of /terms and /privacy exist.
func (u *UI) legalLinks(ctx context.Context) (terms, privacy bool) {
	return u.setting(ctx, SettingTerms) != "", u.setting(ctx, SettingPrivacy) != ""
}
