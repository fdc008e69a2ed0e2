package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/backup"
	"github.com/hearthxmpp/hearth/appliance/control"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/webui"
)

// maxTextInput bounds what `hearth settings set` reads from stdin: more
// than any text may hold, so that a too long text is refused with the
// settings' own message.
const maxTextInput = 1 << 20

// settingsCmd implements `hearth settings show [--json]` and `hearth
// settings set welcome|terms|privacy [TEXT|-]`: the texts of the admin
// settings page (/admin/settings), with the same rules (webui.CheckText).
// When the server runs they go through its control socket, so its log
// records the change ("by hearth CLI") like the page's; otherwise they are
// read and written in the database directly (the pages read the texts on
// every request, so nothing else needs the server). The registration
// policy is shown here and changed with `hearth invite registration`.
func settingsCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("settings "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	asJSON := fs.Bool("json", false, "with show: print the settings as JSON")
	positional, err := parseWithPositional(fs, args[1:])
	if err != nil {
		return 2
	}
	ctx := context.Background()
	switch {
	case sub == "show" && len(positional) == 0:
		var v webui.Settings
		err := control.Call(ctx, *data, ctlSettingsShow, nil, &v)
		if errors.Is(err, control.ErrNotRunning) {
			v, err = readSettingsOffline(ctx, *data)
		}
		if err != nil {
			return reportCallError(err, *data, stderr)
		}
		if v.Server == nil && err == nil {
			v.Server, err = readServerSettingsOffline(ctx, *data)
			if err != nil {
				return reportCallError(err, *data, stderr)
			}
		}
		if *asJSON {
			b, _ := json.MarshalIndent(v, "", "  ")
			fmt.Fprintf(stdout, "%s\n", b)
			return 0
		}
		printSettings(stdout, v)
		return 0
	case sub == "set" && len(positional) == 2 && isAdminFlag(positional[0]):
		return setServerSetting(ctx, *data, positional[0], positional[1], stdout, stderr)
	case sub == "set" && len(positional) >= 1:
		name := positional[0]
		if _, ok := webui.TextKey(name); !ok {
			fmt.Fprintf(stderr, "hearth settings set: unknown setting %q: want a text (%s) or a server setting (%s)\n",
				name, strings.Join(webui.TextNames, ", "), adminFlagNames())
			return 2
		}
		text := strings.Join(positional[1:], " ")
		if len(positional) == 1 || (len(positional) == 2 && positional[1] == "-") {
			if f, ok := stdin.(*os.File); ok {
				if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
					fmt.Fprintln(stderr, "Type the text, then Ctrl-D:")
				}
			}
			b, err := io.ReadAll(io.LimitReader(stdin, maxTextInput))
			if err != nil {
				fmt.Fprintf(stderr, "hearth: %v\n", err)
				return 1
			}
			text = string(b)
		}
		// The same check as the server's, before sending.
		if _, err := webui.CheckText(textKey(name), text); err != nil {
			return reportCallError(settingError(err, name), *data, stderr)
		}
		err := control.Call(ctx, *data, ctlSettingsSet, ctlSettingArgs{Name: name, Text: text}, nil)
		if errors.Is(err, control.ErrNotRunning) {
			err = saveTextOffline(ctx, *data, name, text)
		}
		if err != nil {
			return reportCallError(err, *data, stderr)
		}
		if strings.TrimSpace(text) == "" {
			fmt.Fprintf(stdout, "%s removed\n", textTitle(name))
		} else {
			fmt.Fprintf(stdout, "%s saved\n", textTitle(name))
		}
		return 0
	case sub == "set":
		fmt.Fprintf(stderr, "hearth settings set: need a text name (%s), then the text, or - to read it from stdin\n", strings.Join(webui.TextNames, ", "))
		return 2
	case sub == "show":
		fmt.Fprintf(stderr, "hearth settings show: unexpected argument %q\n", positional[0])
		return 2
	default:
		fmt.Fprintf(stderr, "hearth: unknown settings command %q\n\n%s", sub, usage)
		return 2
	}
}

// textKey is the settings key of the text named name (webui.TextKey), ""
// when there is none (webui.SetText then fails with ErrUnknownText).
func textKey(name string) string {
	key, _ := webui.TextKey(name)
	return key
}

// textTitle names a text for people.
func textTitle(name string) string {
	switch name {
	case "welcome":
		return "welcome message"
	case "terms":
		return "terms of service (/terms)"
	case "privacy":
		return "privacy policy (/privacy)"
	}
	return name
}

// settingError turns the errors of webui.SetText about the text named
// name into control errors (bad-request); others pass unchanged.
func settingError(err error, name string) error {
	switch {
	case errors.Is(err, webui.ErrUnknownText):
		return control.Errorf(control.CodeBadRequest, "unknown text %q: want %s", name, strings.Join(webui.TextNames, ", "))
	case errors.Is(err, webui.ErrInvalidText):
		return control.Errorf(control.CodeBadRequest, "the %s is %s", textTitle(name), strings.TrimPrefix(err.Error(), webui.ErrInvalidText.Error()+": "))
	}
	return err
}

// setServerSetting is `hearth settings set NAME VALUE` for a server
// setting (adminFlags): through the running server, which restarts its
// services to apply it, or else stored for the next start.
func setServerSetting(ctx context.Context, dataDir, name, value string, stdout, stderr io.Writer) int {
	vals := map[string]string{name: value}
	err := control.Call(ctx, dataDir, ctlSettingsServer, ctlServerSettingsArgs{Values: vals}, nil)
	if err == nil {
		fmt.Fprintf(stdout, "%s saved: the server restarts its services to apply it\n", name)
		return 0
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return reportCallError(err, dataDir, stderr)
	}
	st, _, err := offlineStore(ctx, dataDir)
	if err != nil {
		return reportCallError(err, dataDir, stderr)
	}
	defer st.Close()
	if _, err := storeServerSettings(ctx, st, nil, vals); err != nil {
		return reportCallError(serverSettingError(err), dataDir, stderr)
	}
	fmt.Fprintf(stdout, "%s saved: applies at the next start of hearth serve (unless --%s is given there)\n", name, name)
	return 0
}

// readServerSettingsOffline reads the server settings stored in dataDir's
// database for the next start.
func readServerSettingsOffline(ctx context.Context, dataDir string) ([]webui.ServerSetting, error) {
	st, _, err := offlineStore(ctx, dataDir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return storedServerSettings(ctx, st)
}

// printSettings prints v for people: the registration policy, then each
// text (indented) or "not set", then the server settings.
func printSettings(w io.Writer, v webui.Settings) {
	if v.Open {
		fmt.Fprintln(w, "registration: open (anyone can create an account from a chat app)")
	} else {
		fmt.Fprintln(w, "registration: closed (invitations only)")
	}
	for _, t := range []struct{ name, text string }{{"welcome", v.Welcome}, {"terms", v.Terms}, {"privacy", v.Privacy}} {
		if t.text == "" {
			fmt.Fprintf(w, "%s: not set\n", t.name)
			continue
		}
		fmt.Fprintf(w, "%s:\n", t.name)
		for line := range strings.SplitSeq(t.text, "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	for _, st := range v.Server {
		val := st.Value
		switch {
		case val == "" && st.List:
			val = "none"
		case val == "":
			val = "default"
		}
		fixed := ""
		if st.Fixed {
			fixed = " (set on the command line)"
		}
		fmt.Fprintf(w, "%s: %s%s\n", st.Flag, strings.ReplaceAll(val, "\n", ", "), fixed)
	}
}

// offlineStore opens dataDir's database when no server runs, with the
// invitation service for the registration policy; it fails when the data
// directory has no domain yet (never served).
func offlineStore(ctx context.Context, dataDir string) (*store.Store, *invite.Service, error) {
	st, err := store.Open(filepath.Join(dataDir, backup.DBName))
	if err != nil {
		return nil, nil, err
	}
	domain, err := st.Setting(ctx, store.SettingDomain)
	if err != nil {
		st.Close()
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, fmt.Errorf("%s has no domain yet: start the server once (hearth serve --data %s --domain ...)", dataDir, dataDir)
		}
		return nil, nil, err
	}
	return st, invite.New(invite.Config{Store: st, Domain: domain, Logger: slog.New(slog.DiscardHandler)}), nil
}

// readSettingsOffline reads the settings from dataDir's database.
func readSettingsOffline(ctx context.Context, dataDir string) (webui.Settings, error) {
	st, inv, err := offlineStore(ctx, dataDir)
	if err != nil {
		return webui.Settings{}, err
	}
	defer st.Close()
	return webui.ReadSettings(ctx, st, inv.Open(ctx))
}

// saveTextOffline stores the text named name in dataDir's database.
func saveTextOffline(ctx context.Context, dataDir, name, text string) error {
	st, _, err := offlineStore(ctx, dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	return settingError(webui.SaveText(ctx, st, textKey(name), text), name)
}
