package webui

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
)

func TestSetTextExport(t *testing.T) {
	e := newEnv(t)
	e.setUp()
	ctx := context.Background()
	b := e.browser(internet, true)
	for _, name := range TextNames {
		if _, ok := TextKey(name); !ok {
			t.Fatalf("TextKey(%q) unknown", name)
		}
	}
	if _, ok := TextKey("motd"); ok {
		t.Fatal("TextKey accepts an unknown name")
	}
	if err := e.ui.SetText(ctx, "domain", "evil.example", "cli"); !errors.Is(err, ErrUnknownText) {
		t.Fatalf("unknown key: %v", err)
	}
	if v, _ := e.st.Setting(ctx, store.SettingDomain); v == "evil.example" {
		t.Fatal("SetText wrote another setting")
	}
	for _, c := range []struct{ key, text string }{
		{SettingWelcome, strings.Repeat("x", MaxWelcomeBytes+1)},
		{SettingTerms, strings.Repeat("x", MaxPageBytes+1)},
		{SettingPrivacy, "bell\x07"},
		{SettingTerms, "bad \xff utf-8"},
	} {
		if err := e.ui.SetText(ctx, c.key, c.text, "cli"); !errors.Is(err, ErrInvalidText) {
			t.Fatalf("SetText(%s, %.20q): %v", c.key, c.text, err)
		}
	}
	// Each text has its own limit.
	if _, err := CheckText(SettingTerms, strings.Repeat("x", MaxWelcomeBytes+1)); err != nil {
		t.Fatalf("terms of %d bytes: %v", MaxWelcomeBytes+1, err)
	}
	if err := e.ui.SetText(ctx, SettingTerms, "  Be kind.\r\nNo spam.  \n", "cli"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, b.do("GET", "/terms", nil), 200, "Be kind.<br> No spam.")
	got, err := e.ui.Settings(ctx)
	if err != nil || !reflect.DeepEqual(got, Settings{Terms: "Be kind.\nNo spam."}) {
		t.Fatalf("Settings = %+v, %v", got, err)
	}
	if !strings.Contains(e.logs.String(), `text changed" key=web-terms by=cli`) {
		t.Fatalf("log:\n%s", e.logs)
	}
	// SaveText (no server, no log) is the same rule.
	if err := SaveText(ctx, e.st, SettingPrivacy, "\x00"); !errors.Is(err, ErrInvalidText) {
		t.Fatalf("SaveText invalid: %v", err)
	}
	if err := SaveText(ctx, e.st, SettingPrivacy, "We keep nothing."); err != nil {
		t.Fatal(err)
	}
	if err := e.inv.SetOpen(ctx, true); err != nil {
		t.Fatal(err)
	}
	got, err = ReadSettings(ctx, e.st, e.inv.Open(ctx))
	if err != nil || !reflect.DeepEqual(got, Settings{Open: true, Terms: "Be kind.\nNo spam.", Privacy: "We keep nothing."}) {
		t.Fatalf("ReadSettings = %+v, %v", got, err)
	}
	// The settings page shows what SetText stored.
	a := e.loggedIn("root")
	wantCode(t, a.do("GET", "/admin/settings", nil), 200, `value="open" checked`, "We keep nothing.</textarea>")
	// An empty text removes the page.
	if err := e.ui.SetText(ctx, SettingTerms, " \n ", "cli"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, b.do("GET", "/terms", nil), http.StatusNotFound)
}

func TestUndeleteExport(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DeletionGrace = 48 * time.Hour })
	ctx := context.Background()
	e.adminAccount("root", "root password")
	e.user("kid")
	if err := e.ui.Undelete(ctx, "kid", "cli"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("undelete an unmarked account: %v", err)
	}
	if _, err := e.ui.DeleteAccount(ctx, "kid", "root", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Credentials(ctx, "kid", "SHA-256"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("marked kid can still log in: %v", err)
	}
	if err := e.ui.Undelete(ctx, "kid", "cli"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Credentials(ctx, "kid", "SHA-256"); err != nil {
		t.Fatalf("kid's password is not back: %v", err)
	}
	if dels, _ := e.st.AccountDeletions(ctx); len(dels) != 0 {
		t.Fatalf("still marked: %v", dels)
	}
	// The web login works again.
	e.userLogin("kid")
	if err := e.ui.Undelete(ctx, "kid", "cli"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("undelete twice: %v", err)
	}
	if !strings.Contains(e.logs.String(), `account deletion cancelled" user=kid by=cli`) {
		t.Fatalf("log:\n%s", e.logs)
	}
}

// Two administrators deleting each other at the same instant: one
// succeeds, the other is refused as the last administrator.
func TestDeleteAccountLastAdminRace(t *testing.T) {
	for _, now := range []bool{false, true} {
		e := newEnv(t, func(c *Config) { c.DeletionGrace = time.Hour })
		ctx := context.Background()
		e.adminAccount("root", "root password")
		e.adminAccount("dad", "dad password")
		start := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, p := range [][2]string{{"root", "dad"}, {"dad", "root"}} {
			wg.Go(func() {
				<-start
				_, errs[i] = e.ui.DeleteAccount(ctx, p[1], p[0], now)
			})
		}
		close(start)
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs...), ErrLastAdmin) {
			t.Fatalf("now=%v: errors %v, want one success and one ErrLastAdmin", now, errs)
		}
		if n, err := e.st.CountAdmins(ctx); err != nil || n != 1 {
			t.Fatalf("now=%v: %d administrators left, %v", now, n, err)
		}
	}
}

func TestStatusExport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.user("kid")
	st, err := e.ui.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.Version != "" || st.Accounts != 1 || st.HeapBytes <= 0 || st.Goroutines <= 0 || st.Uploads == nil {
		t.Fatalf("Status without a server = %+v", st)
	}
	for _, f := range st.ActiveFacts() {
		if f.Label == "online now" {
			t.Fatal("online now without a server")
		}
	}

	var addr string
	e = newEnv(t, withServer(t, &addr))
	e.user("alice")
	e.user("bob")
	e.xmppLogin(addr, "alice", "phone")
	e.st.SetLastActivity(ctx, "bob", e.clock.Now().Add(-3*24*time.Hour), "")
	e.clock.Advance(90 * time.Minute)
	st, err = e.ui.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Version != "1.2.3-test" || st.Uptime() != 90*time.Minute || st.Accounts != 2 || st.Devices != 1 ||
		st.ActiveNow != 1 || st.Active24h != 1 || st.Active7d != 2 || st.Active30d != 2 ||
		st.Disk == nil || st.Disk.TotalBytes <= 0 || st.Disk.FreeBytes < 0 {
		t.Fatalf("Status = %+v", st)
	}
	var facts []string
	for _, f := range append(st.Facts(), st.ActiveFacts()...) {
		facts = append(facts, f.Label+": "+f.Value)
	}
	all := strings.Join(facts, "\n")
	for _, want := range []string{"Version: Hearth 1.2.3-test", "Running for: 1 hour, 30 minutes (since ", "Accounts: 2",
		"Connected devices: 1", "online now: 1", "in the last 7 days: 2", "Shared files: 0 files, 0 bytes"} {
		if !strings.Contains(all, want) {
			t.Errorf("facts lack %q:\n%s", want, all)
		}
	}
}
