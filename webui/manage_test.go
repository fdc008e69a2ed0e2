package webui

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
)

func TestUsersRole(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.loggedIn("root")
	e.user("kid")
	wantCode(t, a.do("GET", "/admin/users", nil), 200, `action="/admin/users/role"`, `<option value="admin" selected>administrator</option>`,
		`<label for="role-kid">Role of kid</label>`)

	// No CSRF token: refused, nothing changed.
	form := url.Values{"username": {"kid"}, "role": {"admin"}}
	wantCode(t, a.do("POST", "/admin/users/role", form), http.StatusForbidden)
	// Not an administrator: refused, even with the session's token.
	k := e.userLogin("kid")
	wantCode(t, k.post("/account", "/admin/users/role", url.Values{"username": {"kid"}, "role": {"admin"}}), http.StatusForbidden, "Not an administrator")
	if r, _ := e.st.Role(ctx, "kid"); r != store.RoleNormal {
		t.Fatalf("kid's role %q after refused requests", r)
	}

	// Bad input: form messages.
	wantCode(t, a.post("/admin/users", "/admin/users/role", url.Values{"username": {"kid"}, "role": {"owner"}}), http.StatusBadRequest, "Choose limited, normal or administrator")
	wantCode(t, a.post("/admin/users", "/admin/users/role", url.Values{"username": {"nobody"}, "role": {"normal"}}), http.StatusNotFound, "No such account")
	// The only administrator stays one.
	wantCode(t, a.post("/admin/users", "/admin/users/role", url.Values{"username": {"root"}, "role": {"normal"}}), http.StatusConflict, "root is the only administrator")
	if r, _ := e.st.Role(ctx, "root"); r != store.RoleAdmin {
		t.Fatalf("root's role %q", r)
	}

	// Success, logged with who did it.
	rec := a.post("/admin/users", "/admin/users/role", url.Values{"username": {"kid"}, "role": {"limited"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/users?done=role&user=kid&role=limited" {
		t.Fatalf("role change: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	wantCode(t, a.do("GET", "/admin/users?done=role&user=kid&role=limited", nil), 200, "kid is now limited (chats, cannot invite).")
	if r, _ := e.st.Role(ctx, "kid"); r != store.RoleLimited {
		t.Fatalf("kid's role %q", r)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "role changed") || !strings.Contains(logs, "user=kid from=normal to=limited by=root") {
		t.Fatalf("log lacks the role change:\n%s", logs)
	}

	// With a second administrator, root may step down: the admin pages
	// close for root at once.
	if rec := a.post("/admin/users", "/admin/users/role", url.Values{"username": {"kid"}, "role": {"admin"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("promote kid: %d", rec.Code)
	}
	rec = a.post("/admin/users", "/admin/users/role", url.Values{"username": {"root"}, "role": {"normal"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/account" {
		t.Fatalf("step down: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	wantCode(t, a.do("GET", "/admin/users", nil), http.StatusForbidden, "Not an administrator")
	wantCode(t, k.do("GET", "/admin/users", nil), 200)
}

func TestSetRoleExport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.adminAccount("root", "root password")
	e.user("kid")
	if err := e.ui.SetRole(ctx, "root", store.RoleLimited, "cli"); !errors.Is(err, ErrLastAdmin) || !errors.Is(err, store.ErrLastAdmin) {
		t.Fatalf("demote the last admin: %v", err)
	}
	if err := e.ui.SetRole(ctx, "kid", "boss", "cli"); !errors.Is(err, ErrInvalidRole) {
		t.Fatalf("invalid role: %v", err)
	}
	if err := e.ui.SetRole(ctx, "ghost", store.RoleNormal, "cli"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no account: %v", err)
	}
	if err := e.ui.SetRole(ctx, "kid", store.RoleAdmin, "cli"); err != nil {
		t.Fatal(err)
	}
	if err := e.ui.SetRole(ctx, "root", store.RoleNormal, "cli"); err != nil {
		t.Fatalf("demote with another admin: %v", err)
	}
	if !strings.Contains(e.logs.String(), "user=root from=admin to=normal by=cli") {
		t.Fatalf("log:\n%s", e.logs)
	}
}

func TestDeleteAccountExport(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DeletionGrace = 48 * time.Hour })
	ctx := context.Background()
	e.adminAccount("root", "root password")
	e.user("kid")
	e.user("mum")
	k := e.userLogin("kid")

	if _, err := e.ui.DeleteAccount(ctx, "root", "cli", true); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("delete the last admin: %v", err)
	}
	if _, err := e.ui.DeleteAccount(ctx, "ghost", "cli", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no account: %v", err)
	}
	// With the grace period: locked until the returned time.
	due, err := e.ui.DeleteAccount(ctx, "kid", "cli", false)
	if err != nil || !due.Equal(e.clock.Now().Add(48*time.Hour)) {
		t.Fatalf("delete kid = %v, %v", due, err)
	}
	if rec := k.do("GET", "/account", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("kid's web session survived: %d", rec.Code)
	}
	if _, err := e.ui.DeleteAccount(ctx, "kid", "cli", false); !errors.Is(err, store.ErrExists) {
		t.Fatalf("delete a marked account again: %v", err)
	}
	// now: at once, also for a marked account.
	if due, err := e.ui.DeleteAccount(ctx, "kid", "cli", true); err != nil || !due.IsZero() {
		t.Fatalf("delete kid now = %v, %v", due, err)
	}
	if due, err := e.ui.DeleteAccount(ctx, "mum", "cli", true); err != nil || !due.IsZero() {
		t.Fatalf("delete mum now = %v, %v", due, err)
	}
	for _, u := range []string{"kid", "mum"} {
		if ok, _ := e.st.AccountExists(ctx, u); ok {
			t.Fatalf("%s still exists", u)
		}
	}
	if !strings.Contains(e.logs.String(), `account deleted" user=mum by=cli`) {
		t.Fatalf("log:\n%s", e.logs)
	}
	// An administrator may delete another one, not the last.
	e.adminAccount("dad", "dad password")
	if _, err := e.ui.DeleteAccount(ctx, "dad", "root", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ui.DeleteAccount(ctx, "root", "cli", false); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("delete root while dad is marked: %v", err)
	}
}

func TestResetLinkExport(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DeletionGrace = time.Hour })
	ctx := context.Background()
	e.adminAccount("root", "root password")
	e.user("kid")
	link, expires, err := e.ui.ResetLink(ctx, "kid", "cli")
	if err != nil || !strings.HasPrefix(link, "https://example.org/reset/") || !expires.Equal(e.clock.Now().Add(PasswordResetLifetime)) {
		t.Fatalf("ResetLink = %q %v %v", link, expires, err)
	}
	wantCode(t, e.browser(internet, true).do("GET", strings.TrimPrefix(link, "https://example.org"), nil), 200, "A new password for kid@example.org")
	if strings.Contains(e.logs.String(), strings.TrimPrefix(link, "https://example.org/reset/")) {
		t.Fatal("the token was logged")
	}
	if _, _, err := e.ui.ResetLink(ctx, "ghost", "cli"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no account: %v", err)
	}
	if _, err := e.ui.DeleteAccount(ctx, "kid", "root", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.ui.ResetLink(ctx, "kid", "cli"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("marked account: %v", err)
	}
}

func TestAnnounceExport(t *testing.T) {
	e := newEnv(t)
	if _, err := e.ui.Announce(context.Background(), "hello", "cli"); !errors.Is(err, ErrNoServer) {
		t.Fatalf("without a server: %v", err)
	}
	var addr string
	e = newEnv(t, withServer(t, &addr))
	ctx := context.Background()
	e.user("kid")
	e.user("mum")
	for _, text := range []string{" \r\n ", "a\x00b", strings.Repeat("x", MaxAnnouncementBytes+1)} {
		if _, err := e.ui.Announce(ctx, text, "cli"); !errors.Is(err, ErrInvalidAnnouncement) {
			t.Fatalf("Announce(%q): %v", text, err)
		}
	}
	n, err := e.ui.Announce(ctx, " Dinner at 7.\r\nBring cake. ", "cli")
	if err != nil || n != 2 {
		t.Fatalf("Announce = %d, %v", n, err)
	}
	msgs, _ := e.st.OfflineMessages(ctx, "kid")
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Stanza), "Dinner at 7.\nBring cake.</body>") || strings.Contains(string(msgs[0].Stanza), "<subject") {
		t.Fatalf("kid's offline messages: %v", msgs)
	}
	if !strings.Contains(e.logs.String(), `announcement sent" accounts=2 by=cli`) {
		t.Fatalf("log:\n%s", e.logs)
	}
}
