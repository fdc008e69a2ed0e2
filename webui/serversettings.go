package webui

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// ServerSetting is one server setting the administrator may change on the
// settings page (retention, upload limits, XEP-0157 contact addresses...):
// a `hearth serve` flag whose value is stored in the settings table and
// applied at each start unless the flag is given on the command line.
type ServerSetting struct {
	// Flag is the flag's name without dashes ("mam-retention").
	Flag string
	// Label and Help say what it is and how to write a value.
	Label, Help string
	// Value is the value in force, as the flag prints it ("720h0m0s",
	// "100MiB"); for a List, one value per line.
	Value string
	// List: a repeatable setting (one value per line).
	List bool
	// Fixed: given on the command line, so not changeable here.
	Fixed bool
}

// SettingError is a server setting the administrator typed that cannot be
// saved: Flag names it, Text says why in plain words.
type SettingError struct {
	Flag, Text string
}

func (e *SettingError) Error() string { return e.Flag + ": " + e.Text }

// ServerSettingsFunc lists the server settings with their values in force.
type ServerSettingsFunc func(ctx context.Context) []ServerSetting

// SaveServerSettingsFunc checks and stores new values by flag name and
// restarts the services to apply them; a bad value is a *SettingError and
// nothing is stored.
type SaveServerSettingsFunc func(ctx context.Context, vals map[string]string) error

// ErrNoServerSettings: this UI cannot change server settings
// (Config.SaveServerSettings is nil).
var ErrNoServerSettings = errors.New("webui: server settings cannot be changed here")

// SetServerSettings saves new values of server settings by flag name
// (Config.SaveServerSettings, which restarts the services to apply them)
// and logs who changed which ("by": an administrator's localpart, or the
// command line). Errors: ErrNoServerSettings, *SettingError for a bad,
// unknown or fixed setting (nothing is saved), or a store error.
func (u *UI) SetServerSettings(ctx context.Context, vals map[string]string, by string) error {
	if u.cfg.SaveServerSettings == nil {
		return ErrNoServerSettings
	}
	if err := u.cfg.SaveServerSettings(ctx, vals); err != nil {
		return err
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	slices.Sort(names)
	u.log.Info("web: server settings changed", "settings", strings.Join(names, ","), "by", by)
	return nil
}

// settingsServer is POST /admin/settings/server: a field per server
// setting (named by its flag); the ones changed, and not fixed on the
// command line, go to Config.SaveServerSettings, which restarts the
// services. A bad value shows the page again with the form message and
// what was typed.
func (u *UI) settingsServer(w http.ResponseWriter, r *http.Request, s *session) {
	if u.cfg.ServerSettings == nil || u.cfg.SaveServerSettings == nil {
		u.showSettings(w, r, s, http.StatusNotFound, "These settings cannot be changed here.", false)
		return
	}
	changed := map[string]string{}
	for _, st := range u.cfg.ServerSettings(r.Context()) {
		v, ok := r.PostForm[st.Flag]
		if !ok || st.Fixed {
			continue
		}
		if val := strings.TrimSpace(strings.ReplaceAll(v[0], "\r\n", "\n")); val != st.Value {
			changed[st.Flag] = val
		}
	}
	if len(changed) == 0 {
		u.showSettingsNotice(w, r, s, "Nothing changed.")
		return
	}
	err := u.SetServerSettings(r.Context(), changed, s.user)
	var se *SettingError
	switch {
	case errors.As(err, &se):
		u.showSettings(w, r, s, http.StatusBadRequest, se.Text, false, withFailed(se.Flag, changed))
		return
	case err != nil:
		u.log.Error("web: saving server settings failed", "err", err)
		u.showSettings(w, r, s, http.StatusInternalServerError, "The settings could not be saved.", false)
		return
	}
	u.showSettingsNotice(w, r, s, "Saved. Hearth restarts its services to apply them: chat apps reconnect by themselves within a minute.")
}

// showSettingsNotice shows the settings page with a notice.
func (u *UI) showSettingsNotice(w http.ResponseWriter, r *http.Request, s *session, notice string) {
	u.showSettings(w, r, s, http.StatusOK, "", false, func(v *settingsView) { v.Notice = notice })
}

// withFailed marks the server setting flag as the wrong one and shows the
// values typed instead of those in force.
func withFailed(flag string, typed map[string]string) func(*settingsView) {
	return func(v *settingsView) {
		v.Failed = flag
		for i, st := range v.Server {
			if t, ok := typed[st.Flag]; ok {
				v.Server[i].Value = t
			}
		}
	}
}

// ariaInvalid is an input's aria-invalid value.
func ariaInvalid(invalid bool) string {
	if invalid {
		return "true"
	}
	return "false"
}
