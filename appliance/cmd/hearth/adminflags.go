package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/contact"
	"github.com/hearthxmpp/hearth/webui"
)

// adminFlag is one `hearth serve` flag the administrator may also set on
// the admin settings page: its value is kept in the settings table under
// settingFlagPrefix + name and applied at each start when the flag is not
// given on the command line (explicit flags win).
type adminFlag struct {
	name, label, help string
	// list: a repeatable flag (XEP-0157 addresses), stored one value per
	// line, each given to flag.Value.Set in turn.
	list bool
}

// settingFlagPrefix prefixes the settings keys of adminFlags.
const settingFlagPrefix = "flag."

// adminFlags are the server settings of the admin settings page, in the
// order shown.
var adminFlags = []adminFlag{
	{name: "mam-retention", label: "Keep message archives for", help: "a duration like 720h (30 days); 0 keeps them forever (XEP-0313)"},
	{name: "upload-retention", label: "Keep shared files for", help: "a duration like 720h; 0 keeps them forever (XEP-0363)"},
	{name: "upload-max-file-size", label: "Largest shared file", help: "bytes, or with KiB, MiB, GiB: 100MiB"},
	{name: "upload-quota-daily", label: "Shared files per account and day", help: "bytes, or with KiB, MiB, GiB; 0: no quota"},
	{name: "upload-storage-cap", label: "Storage for all shared files", help: "bytes, or with KiB, MiB, GiB; 0: no cap (256 MiB of disk always stay free)"},
	{name: "max-offline", label: "Offline messages kept per account", help: "a number of messages"},
	{name: "account-deletion-grace", label: "Deleted accounts stay restorable for", help: "a duration like 168h (7 days); 0 deletes at once"},
	{name: "contact-admin", label: "Administrator contact addresses (XEP-0157)", help: "one per line: xmpp:admin@example.org, mailto:...", list: true},
	{name: "contact-abuse", label: "Abuse contact addresses (XEP-0157)", help: "one per line", list: true},
	{name: "contact-support", label: "Support contact addresses (XEP-0157)", help: "one per line", list: true},
	{name: "contact-security", label: "Security contact addresses (XEP-0157)", help: "one per line", list: true},
	{name: "contact-feedback", label: "Feedback contact addresses (XEP-0157)", help: "one per line", list: true},
	{name: "contact-sales", label: "Sales contact addresses (XEP-0157)", help: "one per line", list: true},
	{name: "contact-status", label: "Status page addresses (XEP-0157)", help: "one per line: https://status.example.org", list: true},
}

// splitValues is a list flag's stored or typed value: one value per
// line (commas also separate), blanks dropped.
func splitValues(v string) []string {
	var out []string
	for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// setFlag gives value to the flag name of fs (a list flag: each value).
func setFlag(fs *flag.FlagSet, f adminFlag, value string) error {
	if !f.list {
		return fs.Set(f.name, strings.TrimSpace(value))
	}
	for _, v := range splitValues(value) {
		if err := fs.Set(f.name, v); err != nil {
			return err
		}
	}
	return nil
}

// applyAdminFlags sets every adminFlag not given on the command line from
// its stored value. A stored value the flag refuses (written by an older
// version) is logged and left out, so the server still starts; it is
// tried on a scratch flag set first, since some flag types change their
// value even when they refuse one.
func applyAdminFlags(ctx context.Context, st *store.Store, fs *flag.FlagSet, explicit map[string]bool, log *slog.Logger) error {
	scratch, _ := serveFlags(io.Discard)
	for _, f := range adminFlags {
		if explicit[f.name] {
			continue
		}
		v, err := st.Setting(ctx, settingFlagPrefix+f.name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := setFlag(scratch, f, v); err != nil {
			log.Warn("a server setting from the admin page is not valid: using the default", "flag", f.name, "err", err)
			continue
		}
		if err := setFlag(fs, f, v); err != nil {
			return err
		}
	}
	return nil
}

// serverSettings is webui.Config.ServerSettings: the admin flags with the
// values in force in this run.
func (c *serveConfig) serverSettings(context.Context) []webui.ServerSetting {
	out := make([]webui.ServerSetting, 0, len(adminFlags))
	for _, f := range adminFlags {
		s := webui.ServerSetting{Flag: f.name, Label: f.label, Help: f.help, List: f.list, Fixed: c.explicit[f.name]}
		if f.list {
			s.Value = strings.Join(c.contacts[strings.TrimPrefix(f.name, "contact-")+"-addresses"], "\n")
		} else if fl := c.flags.Lookup(f.name); fl != nil {
			s.Value = fl.Value.String()
		}
		out = append(out, s)
	}
	return out
}

// saveServerSettings is webui.Config.SaveServerSettings: storeServerSettings
// with this run's explicit flags, then the services restart shortly after
// to apply the new values.
func (c *serveConfig) saveServerSettings(ctx context.Context, vals map[string]string) error {
	n, err := storeServerSettings(ctx, c.store, c.explicit, vals)
	if err != nil || n == 0 {
		return err
	}
	c.log.Info("server settings saved: restarting the services", "count", n)
	if c.restart != nil {
		time.AfterFunc(restartDelay, c.restart)
	}
	return nil
}

// storeServerSettings stores vals (flag names of adminFlags to new values)
// for the next start, in one transaction, and returns how many it stored.
// Each value is checked by the flag's own parser on a fresh flag set, and
// the XEP-0157 addresses as mod/contact will publish them (a bad one would
// stop the next start); an empty value of a list flag clears it. Errors:
// *webui.SettingError naming the first unknown, bad or explicit (given on
// the command line) flag, with nothing stored; or a store error.
func storeServerSettings(ctx context.Context, st *store.Store, explicit map[string]bool, vals map[string]string) (int, error) {
	for name := range vals {
		if !isAdminFlag(name) {
			return 0, &webui.SettingError{Flag: name, Text: "not a server setting (" + adminFlagNames() + ")"}
		}
	}
	fs, check := serveFlags(io.Discard)
	kv := map[string]string{}
	for _, f := range adminFlags {
		v, ok := vals[f.name]
		if !ok {
			continue
		}
		if explicit[f.name] {
			return 0, &webui.SettingError{Flag: f.name, Text: "set on the command line (--" + f.name + "): change it there"}
		}
		if err := setFlag(fs, f, v); err != nil {
			return 0, &webui.SettingError{Flag: f.name, Text: "not a valid value: " + err.Error()}
		}
		if f.list {
			v = strings.Join(splitValues(v), "\n")
		} else {
			v = strings.TrimSpace(v)
		}
		kv[settingFlagPrefix+f.name] = v
	}
	if _, err := contact.Form(check.contacts); err != nil {
		return 0, &webui.SettingError{Flag: "contact", Text: err.Error()}
	}
	if len(kv) == 0 {
		return 0, nil
	}
	return len(kv), st.SetSettings(ctx, kv)
}

// adminFlagNames lists the server settings' names, comma-separated.
func adminFlagNames() string {
	names := make([]string, len(adminFlags))
	for i, f := range adminFlags {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// storedServerSettings are the server settings as stored for the next
// start, without a running server: Value is the stored value, or "" when
// the flag's default applies.
func storedServerSettings(ctx context.Context, st *store.Store) ([]webui.ServerSetting, error) {
	out := make([]webui.ServerSetting, 0, len(adminFlags))
	for _, f := range adminFlags {
		v, err := st.Setting(ctx, settingFlagPrefix+f.name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		out = append(out, webui.ServerSetting{Flag: f.name, Label: f.label, Help: f.help, List: f.list, Value: v})
	}
	return out, nil
}

func isAdminFlag(name string) bool {
	for _, f := range adminFlags {
		if f.name == name {
			return true
		}
	}
	return false
}
