package webui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

func TestSettingsRegistrationPolicy(t *testing.T) {
	e := newEnv(t)
	a := e.loggedIn("root")
	ctx := context.Background()
	wantCode(t, a.do("GET", "/admin/settings", nil), 200, `value="invite" checked`)
	wantCode(t, a.do("POST", "/admin/settings/registration", url.Values{"policy": {"open"}}), http.StatusForbidden)
	if e.inv.Open(ctx) {
		t.Fatal("registration opened without a CSRF token")
	}
	wantCode(t, a.post("/admin/settings", "/admin/settings/registration", url.Values{"policy": {"wide"}}), http.StatusBadRequest)
	if rec := a.post("/admin/settings", "/admin/settings/registration", url.Values{"policy": {"open"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("open: %d %s", rec.Code, rec.Body)
	}
	if !e.inv.Open(ctx) {
		t.Fatal("registration not open")
	}
	wantCode(t, a.do("GET", "/admin/settings?saved=1", nil), 200, `value="open" checked`, "Saved.")
	a.post("/admin/settings", "/admin/settings/registration", url.Values{"policy": {"invite"}})
	if e.inv.Open(ctx) {
		t.Fatal("registration not closed again")
	}
	// Not for others.
	kid := e.browser(internet, true)
	wantCode(t, kid.do("POST", "/admin/settings/registration", url.Values{"policy": {"open"}, "csrf": {kid.csrf("/admin/login")}}), http.StatusForbidden)
}

func TestTermsAndPrivacyPages(t *testing.T) {
	e := newEnv(t)
	a := e.loggedIn("root")
	b := e.browser(internet, true)
	wantCode(t, b.do("GET", "/terms", nil), http.StatusNotFound, "has not published")
	inv, _ := e.inv.Create(context.Background(), invite.Options{})
	if body := b.do("GET", "/invite/"+inv.Token, nil).Body.String(); strings.Contains(body, `href="/terms"`) {
		t.Fatal("a link to terms that do not exist")
	}
	terms := "Be kind. <script>alert(1)</script>\r\nNo spam.\r\n\r\nSecond paragraph."
	wantCode(t, a.do("POST", "/admin/settings/terms", url.Values{"text": {terms}}), http.StatusForbidden)
	if rec := a.post("/admin/settings", "/admin/settings/terms", url.Values{"text": {terms}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("save terms: %d %s", rec.Code, rec.Body)
	}
	rec := b.do("GET", "/terms", nil)
	wantCode(t, rec, 200, "<h1>Terms of service</h1>", "Be kind. &lt;script&gt;alert(1)&lt;/script&gt;<br> No spam.</p>", "<p> Second paragraph.</p>")
	if strings.Contains(rec.Body.String(), "<script>") {
		t.Fatal("the text was not escaped")
	}
	wantCode(t, b.do("GET", "/privacy", nil), http.StatusNotFound)
	a.post("/admin/settings", "/admin/settings/privacy", url.Values{"text": {"We keep your messages 30 days."}})
	wantCode(t, b.do("GET", "/privacy", nil), 200, "We keep your messages 30 days.")
	wantCode(t, b.do("GET", "/invite/"+inv.Token, nil), 200, `<a href="/terms">the terms of service</a>`, `<a href="/privacy">the privacy policy</a>`)
	wantCode(t, b.do("GET", "/", nil), 200, `href="/terms"`, `href="/privacy"`)
	// Too long, or control characters: refused, nothing changes.
	wantCode(t, a.post("/admin/settings", "/admin/settings/privacy", url.Values{"text": {strings.Repeat("x", MaxPageBytes+1)}}), http.StatusBadRequest, "too long")
	wantCode(t, a.post("/admin/settings", "/admin/settings/welcome", url.Values{"text": {"bell\x07"}}), http.StatusBadRequest)
	wantCode(t, a.post("/admin/settings", "/admin/settings/nonsense", url.Values{"text": {"x"}}), http.StatusNotFound)
	wantCode(t, b.do("GET", "/privacy", nil), 200, "We keep your messages 30 days.")
	// Emptying the text removes the page.
	a.post("/admin/settings", "/admin/settings/privacy", url.Values{"text": {"  "}})
	wantCode(t, b.do("GET", "/privacy", nil), http.StatusNotFound)
}

func TestWelcomeMessage(t *testing.T) {
	var addr string
	e := newEnv(t, withServer(t, &addr))
	a := e.loggedIn("root")
	ctx := context.Background()
	// No text: no message.
	first, _ := e.inv.Create(ctx, invite.Options{})
	if _, _, err := e.inv.Redeem(ctx, first.Token, "early", "a password", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := e.st.OfflineMessages(ctx, "early"); len(msgs) != 0 {
		t.Fatalf("a welcome without a text: %s", msgs[0].Stanza)
	}
	if rec := a.post("/admin/settings", "/admin/settings/welcome", url.Values{"text": {"Hello & welcome!\nAsk root for help."}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("save: %d", rec.Code)
	}
	wantCode(t, a.do("GET", "/admin/settings", nil), 200, "Hello &amp; welcome!\nAsk root for help.</textarea>")

	// A registration through the web form gets it in offline storage.
	inv, _ := e.inv.Create(ctx, invite.Options{})
	b := e.browser(internet, true)
	form := url.Values{"username": {"nina"}, "password": {"nina password"}, "password2": {"nina password"}}
	wantCode(t, b.post("/invite/"+inv.Token, "/invite/"+inv.Token, form), http.StatusCreated)
	msgs, err := e.st.OfflineMessages(ctx, "nina")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("offline messages of nina: %v %v", msgs, err)
	}
	m := string(msgs[0].Stanza)
	for _, want := range []string{"from='example.org'", "to='nina@example.org'", "<subject>Welcome to example.org</subject>", "<body>Hello &amp; welcome!\nAsk root for help.</body>"} {
		if !strings.Contains(strings.ReplaceAll(m, `"`, "'"), want) {
			t.Fatalf("welcome message lacks %q: %s", want, m)
		}
	}
	// And the account reads it at its first login.
	c := e.xmppLogin(addr, "nina", "phone")
	if m := c.Expect(xmpptest.IsMessage("Hello & welcome!\nAsk root for help.")); m.Get("from") != "example.org" {
		t.Fatalf("welcome from %q", m.Get("from"))
	}
}

// TestServerSettingsForm: the limits and retention section lists the
// server settings, sends only changed, not fixed values to
// SaveServerSettings (CSRF and the admin role required), shows a refused
// value with its message and what was typed, and says that the services
// restart.
func TestServerSettingsForm(t *testing.T) {
	var saved []map[string]string
	refuse := false
	e := newEnv(t, func(c *Config) {
		c.ServerSettings = func(context.Context) []ServerSetting {
			return []ServerSetting{
				{Flag: "mam-retention", Label: "Keep message archives for", Help: "a duration", Value: "720h0m0s"},
				{Flag: "upload-quota-daily", Label: "Shared files per account and day", Value: "5MiB", Fixed: true},
				{Flag: "contact-admin", Label: "Administrator contact addresses", Value: "xmpp:root@example.org", List: true},
			}
		}
		c.SaveServerSettings = func(_ context.Context, vals map[string]string) error {
			if refuse {
				return &SettingError{Flag: "mam-retention", Text: "not a valid value: bad duration"}
			}
			saved = append(saved, vals)
			return nil
		}
	})
	a := e.loggedIn("root")
	wantCode(t, a.do("GET", "/admin/settings", nil), 200, "Keep message archives for", `value="720h0m0s"`,
		`name="upload-quota-daily" value="5MiB" disabled`, "Set on the command line (--upload-quota-daily)",
		">xmpp:root@example.org</textarea>")
	form := url.Values{"mam-retention": {"2160h"}, "upload-quota-daily": {"1GiB"}, "contact-admin": {"xmpp:root@example.org\r\nmailto:root@example.org"}}
	wantCode(t, a.do("POST", "/admin/settings/server", form), http.StatusForbidden)
	kid := e.browser(internet, true)
	wantCode(t, kid.do("POST", "/admin/settings/server", url.Values{"csrf": {kid.csrf("/admin/login")}}), http.StatusForbidden)
	if len(saved) != 0 {
		t.Fatal("saved without CSRF token or admin role")
	}
	wantCode(t, a.post("/admin/settings", "/admin/settings/server", form), 200, "Hearth restarts its services")
	if len(saved) != 1 || len(saved[0]) != 2 || saved[0]["mam-retention"] != "2160h" ||
		saved[0]["contact-admin"] != "xmpp:root@example.org\nmailto:root@example.org" {
		t.Fatalf("saved %v; want the two changed, not the fixed one", saved)
	}
	wantCode(t, a.post("/admin/settings", "/admin/settings/server", url.Values{"mam-retention": {"720h0m0s"}}), 200, "Nothing changed.")
	refuse = true
	wantCode(t, a.post("/admin/settings", "/admin/settings/server", url.Values{"mam-retention": {"a month"}}), http.StatusBadRequest,
		"bad duration", `value="a month"`, `aria-invalid="true"`)
	if len(saved) != 1 {
		t.Fatal("a refused value was saved")
	}
}
