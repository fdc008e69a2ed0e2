package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"github.com/hearthxmpp/hearth/webui"
)

// get fetches path from the environment's HTTPS server.
func (e *controlEnv) get(t *testing.T, path string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(e.httpsPort))
		},
	}}
	resp, err := hc.Get("https://" + e.domain + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// hearth settings set/show through the running server: the terms appear
// on /terms at once, the change is logged as the CLI's.
func TestSettingsCommands(t *testing.T) {
	e := startControlEnv(t)
	e.user(t, "mum")
	if err := e.st.SetRole(context.Background(), "mum", store.RoleAdmin); err != nil { // past the setup wizard
		t.Fatal(err)
	}
	if code, body := e.get(t, "/terms"); code != http.StatusNotFound {
		t.Fatalf("/terms before: %d %s", code, body)
	}
	code, out, stderr := e.cli(t, "", "settings", "set", "terms", "Be kind.")
	if code != 0 || out != "terms of service (/terms) saved\n" {
		t.Fatalf("set terms: %d %q %q", code, out, stderr)
	}
	if code, body := e.get(t, "/terms"); code != 200 || !strings.Contains(body, "Be kind.") {
		t.Fatalf("/terms: %d %s", code, body)
	}
	if !strings.Contains(e.log.String(), `text changed" key=web-terms by="hearth CLI"`) {
		t.Fatalf("the server did not log the change:\n%s", e.log)
	}
	// From stdin, with -.
	if code, _, stderr := e.cli(t, "Welcome home!\r\nAsk mum for help.\n", "settings", "set", "welcome", "-"); code != 0 {
		t.Fatalf("set welcome: %s", stderr)
	}
	code, out, _ = e.cli(t, "", "settings", "show")
	if want := "registration: closed (invitations only)\nwelcome:\n  Welcome home!\n  Ask mum for help.\nterms:\n  Be kind.\nprivacy: not set\nmam-retention: 720h0m0s\n"; code != 0 || !strings.HasPrefix(out, want) ||
		!strings.Contains(out, "\naccount-deletion-grace: 168h0m0s (set on the command line)\n") {
		t.Fatalf("show: %d %q, want %q...", code, out, want)
	}
	// Refused like on the page; nothing changes.
	if code, _, stderr := e.cli(t, "", "settings", "set", "terms", "bell\x07"); code != 2 || !strings.Contains(stderr, "control characters") {
		t.Fatalf("control character: %d %q", code, stderr)
	}
	if code, _, stderr := e.cli(t, strings.Repeat("x", webui.MaxWelcomeBytes+1), "settings", "set", "welcome"); code != 2 || !strings.Contains(stderr, "longer than 4000 bytes") {
		t.Fatalf("too long: %d %q", code, stderr)
	}
	if code, _, _ := e.cli(t, "", "settings", "set", "motd", "hi"); code != 2 {
		t.Fatal("unknown text accepted")
	}
	if code, _, _ := e.cli(t, "", "settings", "set"); code != 2 {
		t.Fatal("set without a name accepted")
	}
	var v webui.Settings
	code, out, _ = e.cli(t, "", "settings", "show", "--json")
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || len(v.Server) != len(adminFlags) {
		t.Fatalf("show --json: %d %q %v", code, out, err)
	}
	if v.Server = nil; !reflect.DeepEqual(v, webui.Settings{Welcome: "Welcome home!\nAsk mum for help.", Terms: "Be kind."}) {
		t.Fatalf("show --json: %q", out)
	}
	// Server settings: checked by the flag's parser, stored, shown.
	if code, _, stderr := e.cli(t, "", "settings", "set", "mam-retention", "a month"); code != 2 || !strings.Contains(stderr, "mam-retention: not a valid value") {
		t.Fatalf("bad retention: %d %q", code, stderr)
	}
	if code, out, stderr := e.cli(t, "", "settings", "set", "mam-retention", "2160h"); code != 0 || !strings.Contains(out, "restarts its services") {
		t.Fatalf("set retention: %d %q %q", code, out, stderr)
	}
	if got, err := e.st.Setting(t.Context(), settingFlagPrefix+"mam-retention"); err != nil || got != "2160h" {
		t.Fatalf("stored retention %q, %v", got, err)
	}
	if code, _, stderr := e.cli(t, "", "settings", "set", "account-deletion-grace", "1h"); code != 2 || !strings.Contains(stderr, "set on the command line") {
		t.Fatalf("a flag given on the command line changed: %d %q", code, stderr)
	}
	// An empty text removes the page.
	if code, out, _ := e.cli(t, "", "settings", "set", "terms", ""); code != 0 || out != "terms of service (/terms) removed\n" {
		t.Fatalf("remove terms: %d %q", code, out)
	}
	if code, _ := e.get(t, "/terms"); code != http.StatusNotFound {
		t.Fatalf("/terms after removal: %d", code)
	}
}

// Without a server, settings are read and written in the database.
func TestSettingsCommandsWithoutServer(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "", "settings", "set", "privacy", "Nothing leaves this box.", "--data", dir); code != 1 || !strings.Contains(stderr, "has no domain yet") {
		t.Fatalf("before the first start: %d %q", code, stderr)
	}
	if code, _, stderr := runCmd(t, "pw\n", "user", "add", "mum@example.test", "--data", dir); code != 0 {
		t.Fatal(stderr)
	}
	runCmd(t, "", "invite", "registration", "open", "--data", dir)
	if code, out, stderr := runCmd(t, "", "settings", "set", "privacy", "Nothing leaves this box.", "--data", dir); code != 0 || out != "privacy policy (/privacy) saved\n" {
		t.Fatalf("set offline: %d %q %q", code, out, stderr)
	}
	if code, _, _ := runCmd(t, "", "settings", "set", "privacy", "\x00", "--data", dir); code != 2 {
		t.Fatal("control character accepted offline")
	}
	if code, out, stderr := runCmd(t, "", "settings", "set", "upload-max-file-size", "20MiB", "--data", dir); code != 0 || !strings.Contains(out, "applies at the next start") {
		t.Fatalf("server setting offline: %d %q %q", code, out, stderr)
	}
	if code, _, _ := runCmd(t, "", "settings", "set", "contact-abuse", "not a uri", "--data", dir); code != 2 {
		t.Fatal("a bad contact address stored offline")
	}
	code, out, _ := runCmd(t, "", "settings", "show", "--data", dir)
	if want := "registration: open (anyone can create an account from a chat app)\nwelcome: not set\nterms: not set\nprivacy:\n  Nothing leaves this box.\nmam-retention: default\n"; code != 0 || !strings.HasPrefix(out, want) ||
		!strings.Contains(out, "\nupload-max-file-size: 20MiB\n") || !strings.Contains(out, "\ncontact-abuse: none\n") {
		t.Fatalf("show offline: %d %q", code, out)
	}
}

// hearth user undelete cancels a pending deletion: the password works
// again.
func TestUserUndeleteCommand(t *testing.T) {
	e := startControlEnv(t)
	e.user(t, "kid")
	if code, _, stderr := e.cli(t, "", "user", "undelete", "kid@example.test"); code != 1 || !strings.Contains(stderr, "is not marked for deletion") {
		t.Fatalf("undelete an unmarked account: %d %q", code, stderr)
	}
	if code, _, stderr := e.cli(t, "", "user", "del", "kid@example.test"); code != 0 {
		t.Fatal(stderr)
	}
	c := xmpptest.Dial(t, e.c2s, e.domain)
	c.OpenStream()
	c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: e.domain})
	if el := c.Auth("kid", "pw-kid"); el.Name.Local != "failure" {
		t.Fatalf("kid authenticated while marked for deletion: %s", el)
	}
	code, out, stderr := e.cli(t, "", "user", "undelete", "kid@example.test")
	if code != 0 || !strings.Contains(out, "kid@example.test is kept") {
		t.Fatalf("undelete: %d %q %q", code, out, stderr)
	}
	e.login(t, "kid") // fails the test if the login fails
	if dels, _ := e.st.AccountDeletions(context.Background()); len(dels) != 0 {
		t.Fatalf("still marked: %v", dels)
	}
	if code, _, _ := e.cli(t, "", "user", "undelete", "kid@other.test"); code != 2 {
		t.Fatal("another domain accepted")
	}
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "", "user", "undelete", "kid@example.test", "--data", dir); code != 1 || !strings.Contains(stderr, "hearth is not running on "+dir) {
		t.Fatalf("without a server: %d %q", code, stderr)
	}
}

// hearth status prints the system page's figures.
func TestStatusCommand(t *testing.T) {
	e := startControlEnv(t)
	e.user(t, "mum")
	e.user(t, "kid")
	e.login(t, "mum")
	code, out, stderr := e.cli(t, "", "status")
	if code != 0 {
		t.Fatalf("status: %d %q", code, stderr)
	}
	for _, want := range []string{"Version: Hearth ", "Running for: ", "Memory: ", " free of ", "Database: ", "Shared files: 0 files, 0 bytes\n",
		"Accounts: 2\n", "Connected devices: 1\n", "Active accounts:\n  online now: 1\n  in the last 24 hours: 1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var st webui.SystemStatus
	code, out, _ = e.cli(t, "", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status --json: %d %q %v", code, out, err)
	}
	if !st.Running || st.Accounts != 2 || st.Devices != 1 || st.ActiveNow != 1 || st.Disk == nil || st.Disk.DatabaseBytes <= 0 || st.HeapBytes <= 0 {
		t.Fatalf("status --json = %+v", st)
	}
	if code, _, _ := e.cli(t, "", "status", "extra"); code != 2 {
		t.Fatal("extra argument accepted")
	}
	dir := t.TempDir()
	if code, _, stderr := runCmd(t, "", "status", "--data", dir); code != 1 || !strings.Contains(stderr, "hearth is not running on "+dir) {
		t.Fatalf("without a server: %d %q", code, stderr)
	}
}
