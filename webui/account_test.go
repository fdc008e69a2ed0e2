package webui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// userLogin logs name in on the account pages.
func (e *env) userLogin(name string) *browser {
	e.t.Helper()
	b := e.browser(internet, true)
	form := url.Values{"username": {name}, "password": {name + " password"}, "csrf": {b.csrf("/account/login")}}
	if rec := b.do("POST", "/account/login", form); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/account" {
		e.t.Fatalf("login: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	return b
}

func TestAccountLoginAndPassword(t *testing.T) {
	var addr string
	e := newEnv(t, withServer(t, &addr))
	e.setUp()
	e.user("kid")
	other := e.xmppLogin(addr, "kid", "tablet")
	// Plain HTTP goes to HTTPS; without a session, to the login page.
	if rec := e.browser(internet, false).do("GET", "/account", nil); rec.Code != http.StatusMovedPermanently {
		t.Fatalf("plain HTTP: %d", rec.Code)
	}
	if rec := e.browser(internet, true).do("GET", "/account", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/account/login" {
		t.Fatalf("no session: %d", rec.Code)
	}
	b := e.userLogin("kid")
	wantCode(t, b.do("GET", "/account", nil), 200, "kid@example.org", "Change your password", "Download my data", "Delete my account")
	// A normal user is no administrator.
	wantCode(t, b.do("GET", "/admin/users", nil), http.StatusForbidden, "does not administer")
	wantCode(t, b.do("GET", "/account", nil), 200) // and keeps the session

	change := url.Values{"current": {"wrong"}, "password": {"new kid pw"}, "password2": {"new kid pw"}, "logout": {"1"}}
	wantCode(t, b.do("POST", "/account/password", change), http.StatusForbidden) // no CSRF
	wantCode(t, b.post("/account", "/account/password", change), http.StatusUnauthorized, "current password is not right")
	change.Set("current", "kid password")
	change.Set("password2", "typo")
	wantCode(t, b.post("/account", "/account/password", change), http.StatusBadRequest, "not the same")
	change.Set("password2", "new kid pw")
	if rec := b.post("/account", "/account/password", change); rec.Code != http.StatusSeeOther {
		t.Fatalf("change: %d %s", rec.Code, rec.Body)
	}
	wantCode(t, b.do("GET", "/account?done=password", nil), 200, "Your password is changed.")
	if cond := other.WaitClosed(); cond != "reset" {
		t.Fatalf("other device ended with %q, want reset", cond)
	}
	c := xmpptest.Dial(t, addr, "example.org")
	c.Login("kid", "new kid pw", "tablet")
	if strings.Contains(e.logs.String(), "new kid pw") {
		t.Fatal("password in the log")
	}
	// Log out.
	if rec := b.post("/account", "/account/logout", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/account/login" {
		t.Fatalf("logout: %d", rec.Code)
	}
	if rec := b.do("GET", "/account", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("after logout: %d", rec.Code)
	}
}

func TestAccountExport(t *testing.T) {
	e := newEnv(t)
	e.setUp()
	e.user("juliet")
	ctx := context.Background()
	e.st.PutRosterItem(ctx, "juliet", store.RosterItem{JID: "romeo@example.org", Subscription: "both"})
	e.st.SetVCard(ctx, "juliet", []byte(`<vCard xmlns="vcard-temp"><FN>Juliet</FN></vCard>`))
	e.st.AppendArchive(ctx, "juliet", store.ArchiveEntry{With: "romeo@example.org", Stamp: e.clock.Now(), Stanza: []byte(`<message xmlns="jabber:client"><body>wherefore</body></message>`)})
	b := e.userLogin("juliet")
	wantCode(t, b.do("POST", "/account/export", url.Values{}), http.StatusForbidden)
	rec := b.post("/account", "/account/export", url.Values{"archive": {"1"}})
	if rec.Code != 200 || rec.Header().Get("Content-Disposition") != `attachment; filename="juliet@example.org.xml"` || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/xml") {
		t.Fatalf("export: %d %v", rec.Code, rec.Header())
	}
	root, err := xmlel.Parse(rec.Body.String())
	if err != nil {
		t.Fatalf("export is not XML: %v", err)
	}
	user := root.Child("urn:xmpp:pie:0", "host").Child("urn:xmpp:pie:0", "user")
	if user.Get("name") != "juliet" || user.Child("jabber:iq:roster", "query") == nil || user.Child("vcard-temp", "vCard") == nil ||
		!strings.Contains(rec.Body.String(), "wherefore") {
		t.Fatalf("export: %s", rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatal("the export may be cached")
	}
}

func TestAccountSelfDelete(t *testing.T) {
	var addr string
	e := newEnv(t, withServer(t, &addr), func(c *Config) { c.DeletionGrace = 24 * time.Hour })
	ctx := context.Background()
	e.adminAccount("root", "root password")
	e.user("kid")
	dev := e.xmppLogin(addr, "kid", "phone")
	b := e.userLogin("kid")
	del := url.Values{"current": {"kid password"}, "confirm": {"kdi"}}
	wantCode(t, b.post("/account", "/account/delete", del), http.StatusBadRequest, "type your username")
	del.Set("confirm", "kid")
	del.Set("current", "nope")
	wantCode(t, b.post("/account", "/account/delete", del), http.StatusUnauthorized)
	del.Set("current", "kid password")
	wantCode(t, b.post("/account", "/account/delete", del), 200, "Your account will be deleted", "1 day")
	if cond := dev.WaitClosed(); cond != "not-authorized" {
		t.Fatalf("device ended with %q", cond)
	}
	if dels, _ := e.st.AccountDeletions(ctx); len(dels) != 1 || dels[0].RequestedBy != "kid" {
		t.Fatalf("deletions %+v", dels)
	}
	if rec := b.do("GET", "/account", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("still logged in: %d", rec.Code)
	}
	// The only administrator cannot delete their own account.
	r := e.userLogin("root")
	wantCode(t, r.post("/account", "/account/delete", url.Values{"current": {"root password"}, "confirm": {"root"}}), http.StatusConflict, "only administrator")
	if ok, _ := e.st.AccountExists(ctx, "root"); !ok {
		t.Fatal("root deleted")
	}
}
