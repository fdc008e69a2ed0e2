package webui

import (
	"context"
	"errors"
	"fmt"
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

// ErrUnknownText reports a settings key other than SettingWelcome,
// SettingTerms and SettingPrivacy (or a name other than those of
// TextKey).
var ErrUnknownText = errors.New("webui: no such text setting")

// ErrInvalidText reports a text longer than its limit (MaxWelcomeBytes
// for the welcome message, MaxPageBytes for the others), not UTF-8, or
// with control characters other than line breaks and tabs.
var ErrInvalidText = errors.New("webui: invalid text")

// TextNames are the short names of the administrator's texts, in the
// settings page's order: the page's URLs /admin/settings/{name} and the
// names `hearth settings set` takes. TextKey gives their settings keys.
var TextNames = []string{"welcome", "terms", "privacy"}

// TextKey returns the settings key (SettingWelcome, SettingTerms or
// SettingPrivacy) of the text named name (one of TextNames); ok is false
// for any other name.
func TextKey(name string) (key string, ok bool) {
	switch name {
	case "welcome":
		return SettingWelcome, true
	case "terms":
		return SettingTerms, true
	case "privacy":
		return SettingPrivacy, true
	}
	return "", false
}

// textMax is the limit of the text stored under key, in bytes; 0 for an
// unknown key.
func textMax(key string) int {
	switch key {
	case SettingWelcome:
		return MaxWelcomeBytes
	case SettingTerms, SettingPrivacy:
		return MaxPageBytes
	}
	return 0
}

// CheckText prepares text for the settings key (SettingWelcome,
// SettingTerms or SettingPrivacy): it returns it trimmed, with its line
// breaks unified (CRLF to LF), as SetText stores it. Errors:
// [ErrUnknownText], [ErrInvalidText] (wrapped, with the reason).
func CheckText(key, text string) (string, error) {
	max := textMax(key)
	if max == 0 {
		return "", fmt.Errorf("%w %q", ErrUnknownText, key)
	}
	text = normalizeText(text)
	switch {
	case len(text) > max:
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidText, max)
	case !validText(text, max):
		return "", fmt.Errorf("%w: not UTF-8 or has control characters", ErrInvalidText)
	}
	return text, nil
}

// SaveText stores text under the settings key in st after CheckText; an
// empty text removes it (/terms and /privacy then answer 404, no welcome
// message is sent). The web pages read the texts on every request, so a
// running server shows the change at once. It is what SetText does
// without its log line, for the command line when no server runs.
// Errors: those of CheckText, or a store error.
func SaveText(ctx context.Context, st *store.Store, key, text string) error {
	text, err := CheckText(key, text)
	if err != nil {
		return err
	}
	return st.SetSetting(ctx, key, text)
}

// SetText stores the administrator's text under the settings key
// (SettingWelcome, SettingTerms or SettingPrivacy), like SaveText, and
// logs who changed it ("by": an administrator's localpart, or the command
// line). Errors: [ErrUnknownText], [ErrInvalidText] (wrapped), or a store
// error.
func (u *UI) SetText(ctx context.Context, key, text, by string) error {
	if err := SaveText(ctx, u.cfg.Store, key, text); err != nil {
		return err
	}
	u.log.Info("web: text changed", "key", key, "by", by)
	return nil
}

// Settings are the choices of the settings page (/admin/settings).
type Settings struct {
	// Open: anyone may create an account in-band (XEP-0077) without an
	// invitation (store.SettingRegistration "open", invite.Service.Open).
	Open bool `json:"registration_open"`
	// Welcome, Terms and Privacy are the texts (SettingWelcome,
	// SettingTerms, SettingPrivacy), "" when unset.
	Welcome string `json:"welcome"`
	Terms   string `json:"terms"`
	Privacy string `json:"privacy"`
	// Server are the limits and retention settings in force
	// (Config.ServerSettings), when the UI has them.
	Server []ServerSetting `json:"server,omitempty"`
}

// ReadSettings reads the settings page's choices from st; open is the
// registration policy (invite.Service.Open). Errors: a store error (an
// unset text is "", not an error).
func ReadSettings(ctx context.Context, st *store.Store, open bool) (Settings, error) {
	v := Settings{Open: open}
	for _, f := range []struct {
		key string
		to  *string
	}{{SettingWelcome, &v.Welcome}, {SettingTerms, &v.Terms}, {SettingPrivacy, &v.Privacy}} {
		t, err := st.Setting(ctx, f.key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Settings{}, err
		}
		*f.to = t
	}
	return v, nil
}

// Settings returns the settings page's choices (ReadSettings with the
// registration policy of Config.Invites). Errors: a store error.
func (u *UI) Settings(ctx context.Context) (Settings, error) {
	v, err := ReadSettings(ctx, u.cfg.Store, u.cfg.Invites.Open(ctx))
	if err == nil && u.cfg.ServerSettings != nil {
		v.Server = u.cfg.ServerSettings(ctx)
	}
	return v, err
}

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
	// Server are the limits and retention settings (Config.ServerSettings).
	Server []ServerSetting
	// Failed names the server setting of Error, if any.
	Failed string
}

func (u *UI) settingsPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.showSettings(w, r, s, http.StatusOK, "", r.URL.Query().Get("saved") != "")
}

func (u *UI) showSettings(w http.ResponseWriter, r *http.Request, s *session, status int, errText string, saved bool, opts ...func(*settingsView)) {
	cur, err := u.Settings(r.Context())
	if err != nil {
		u.log.Warn("web: reading the settings failed", "err", err)
	}
	v := settingsView{
		adminView: u.adminView(w, r, s), Open: cur.Open,
		Welcome: cur.Welcome, Terms: cur.Terms, Privacy: cur.Privacy,
	}
	v.Server = cur.Server
	v.Error = errText
	if saved {
		v.Notice = "Saved."
	}
	for _, o := range opts {
		o(&v)
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
	name := r.PathValue("text")
	key, ok := TextKey(name)
	if !ok {
		u.message(w, r, http.StatusNotFound, "Not found", "There is no such setting.")
		return
	}
	if err := u.SetText(r.Context(), key, r.PostFormValue("text"), s.user); err != nil {
		if errors.Is(err, ErrInvalidText) {
			u.showSettings(w, r, s, http.StatusBadRequest, "That text is too long or contains characters that are not allowed.", false)
			return
		}
		u.log.Error("web: saving a setting failed", "key", key, "err", err)
		u.showSettings(w, r, s, http.StatusInternalServerError, "The text could not be saved.", false)
		return
	}
	http.Redirect(w, r, "/admin/settings?saved=1#"+name, http.StatusSeeOther)
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
