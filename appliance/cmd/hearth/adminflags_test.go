package main

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/upload"
	"github.com/hearthxmpp/hearth/webui"
)

// TestServerSettings: values saved from the admin settings page are
// checked by the flags' own parsers, stored in one go, applied at the next
// start to the flags not given on the command line, and trigger a
// restart; bad values and flags fixed on the command line are refused
// with nothing stored.
func TestServerSettings(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// run parses args like one run of serveOnce does.
	run := func(args ...string) *serveConfig {
		fs, cfg := serveFlags(io.Discard)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cfg.store, cfg.log, cfg.flags, cfg.explicit = st, log, fs, explicitFlags(fs)
		if err := applyAdminFlags(ctx, st, fs, cfg.explicit, log); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	restarted := make(chan struct{}, 4)

	cfg := run("--upload-quota-daily", "5MiB")
	cfg.restart = func() { restarted <- struct{}{} }
	byFlag := func(cfg *serveConfig) map[string]webui.ServerSetting {
		out := map[string]webui.ServerSetting{}
		for _, s := range cfg.serverSettings(ctx) {
			out[s.Flag] = s
		}
		return out
	}
	if s := byFlag(cfg); s["mam-retention"].Value != "720h0m0s" || s["mam-retention"].Fixed || !s["upload-quota-daily"].Fixed || !s["contact-admin"].List {
		t.Fatalf("settings before: %+v", s)
	}

	for _, bad := range []map[string]string{
		{"mam-retention": "a month"},
		{"upload-max-file-size": "-3"},
		{"max-offline": "many"},
		{"upload-quota-daily": "1GiB"}, // given on the command line
		{"domain": "evil.example"},     // not a setting of the page
		{"contact-abuse": "not a uri"},
	} {
		var se *webui.SettingError
		if err := cfg.saveServerSettings(ctx, bad); !errors.As(err, &se) {
			t.Errorf("saving %v = %v, want a *webui.SettingError", bad, err)
		}
	}
	if _, err := st.Setting(ctx, settingFlagPrefix+"mam-retention"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused value was stored: %v", err)
	}

	err = cfg.saveServerSettings(ctx, map[string]string{
		"mam-retention": "2160h", "upload-max-file-size": "20MiB", "max-offline": " 50 ",
		"contact-admin": "xmpp:dad@example.org\n\n mailto:dad@example.org ",
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-time.After(10 * time.Second):
		t.Fatal("no restart after saving")
	}

	next := run("--upload-quota-daily", "5MiB", "--max-offline", "7")
	if next.mamRetention != 90*24*time.Hour || next.uploadMaxFile != 20<<20 || next.limits.MaxOfflinePerUser != 7 ||
		next.uploadQuota != 5<<20 {
		t.Fatalf("next run: retention %v, max file %v, offline %d, quota %v", next.mamRetention, next.uploadMaxFile, next.limits.MaxOfflinePerUser, next.uploadQuota)
	}
	if got := next.contacts["admin-addresses"]; len(got) != 2 || got[1] != "mailto:dad@example.org" {
		t.Fatalf("contact addresses %q", got)
	}
	if s := byFlag(next); s["contact-admin"].Value != "xmpp:dad@example.org\nmailto:dad@example.org" || !s["max-offline"].Fixed {
		t.Fatalf("settings after: %+v", s)
	}

	// A stored value the flag refuses does not stop the start.
	if err := st.SetSetting(ctx, settingFlagPrefix+"upload-retention", "soon"); err != nil {
		t.Fatal(err)
	}
	if cfg := run(); cfg.uploadRetention != upload.DefaultRetention {
		t.Fatalf("bad stored value applied: %v", cfg.uploadRetention)
	}
}
