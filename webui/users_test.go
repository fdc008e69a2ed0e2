package webui

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// addUpload gives user one stored file under dir (as mod/upload keeps it).
func (e *env) addUpload(dir, user string) string {
	e.t.Helper()
	ctx := context.Background()
	id := strings.Repeat("ab", 32)
	if err := e.st.CreateUpload(ctx, store.Upload{ID: id, Username: user, Filename: "cat.jpg", Size: 3, Created: e.clock.Now()}, time.Time{}, time.Time{}, nil); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.FinishUpload(ctx, id, e.clock.Now(), "image/jpeg"); err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(dir, "files", id)
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, []byte("cat"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func TestDeleteWithGracePeriod(t *testing.T) {
	var addr string
	uploads := t.TempDir()
	e := newEnv(t, withServer(t, &addr), func(c *Config) { c.DeletionGrace = 7 * 24 * time.Hour; c.UploadDir = uploads })
	a := e.loggedIn("root")
	ctx := context.Background()
	e.user("kid")
	e.user("mum")
	file := e.addUpload(uploads, "kid")
	phone := e.xmppLogin(addr, "kid", "phone")
	mum := e.xmppLogin(addr, "mum", "pc")

	del := url.Values{"username": {"kid"}, "confirm": {"kid"}}
	wantCode(t, a.do("POST", "/admin/users/delete", del), http.StatusForbidden)
	rec := a.post("/admin/users", "/admin/users/delete", del)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/users?done=marked&user=kid" {
		t.Fatalf("delete: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	// The live stream ends at once with not-authorized; the account is
	// locked but its data stays.
	if cond := phone.WaitClosed(); cond != "not-authorized" {
		t.Fatalf("kid's stream ended with %q", cond)
	}
	if _, err := e.st.Credentials(ctx, "kid", "SHA-256"); err == nil {
		t.Fatal("kid can still log in")
	}
	if ok, _ := e.st.AccountExists(ctx, "kid"); !ok {
		t.Fatal("kid was deleted before the grace period")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal("kid's file is gone before the grace period")
	}
	wantCode(t, a.do("GET", "/admin/users?done=marked&user=kid", nil), 200,
		"kid is locked and will be deleted in 7 days", "Locked: will be deleted on 8 March 2025 12:00 (asked by root)", "Keep kid", "Delete kid now")
	wantCode(t, a.post("/admin/users", "/admin/users/delete", del), http.StatusConflict, "already marked")

	// Undo: kid logs in again with the old password.
	if rec := a.post("/admin/users", "/admin/users/undelete", url.Values{"username": {"kid"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("undelete: %d %s", rec.Code, rec.Body)
	}
	wantCode(t, a.do("GET", "/admin/users?done=kept&user=kid", nil), 200, "kid is kept")
	e.xmppLogin(addr, "kid", "phone").Close()
	wantCode(t, a.post("/admin/users", "/admin/users/undelete", url.Values{"username": {"kid"}}), http.StatusNotFound)
	wantCode(t, a.post("/admin/users", "/admin/users/delete-now", url.Values{"username": {"kid"}}), http.StatusNotFound, "Only an account marked")

	// Mark again; the job deletes it once the period is over, with its file.
	a.post("/admin/users", "/admin/users/delete", del)
	e.clock.Advance(7*24*time.Hour - time.Minute)
	e.ui.runJobs(ctx)
	if ok, _ := e.st.AccountExists(ctx, "kid"); !ok {
		t.Fatal("deleted too early")
	}
	e.clock.Advance(time.Minute)
	e.ui.runJobs(ctx)
	if ok, _ := e.st.AccountExists(ctx, "kid"); ok {
		t.Fatal("the job did not delete kid")
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("kid's file survived: %v", err)
	}
	// Mum was never disturbed.
	mum.Send("<message to='mum@example.org' id='x'><body>ping</body></message>")
	mum.Expect(xmpptest.IsMessage("ping"))

	// Delete now, for a marked account (the clock ended the old login).
	a = e.login("root")
	a.post("/admin/users", "/admin/users/delete", url.Values{"username": {"mum"}, "confirm": {"mum"}})
	if cond := mum.WaitClosed(); cond != "not-authorized" {
		t.Fatalf("mum's stream ended with %q", cond)
	}
	if rec := a.post("/admin/users", "/admin/users/delete-now", url.Values{"username": {"mum"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete now: %d %s", rec.Code, rec.Body)
	}
	if ok, _ := e.st.AccountExists(ctx, "mum"); ok {
		t.Fatal("mum still exists")
	}
}

var resetRE = regexp.MustCompile(`https://example\.org/reset/([A-Z2-7]{26})`)

func TestPasswordResetLink(t *testing.T) {
	var addr string
	e := newEnv(t, withServer(t, &addr))
	a := e.loggedIn("root")
	e.user("gran")
	old := e.xmppLogin(addr, "gran", "tablet")

	wantCode(t, a.do("POST", "/admin/users/reset", url.Values{"username": {"gran"}}), http.StatusForbidden)
	wantCode(t, a.post("/admin/users", "/admin/users/reset", url.Values{"username": {"nobody"}}), http.StatusNotFound)
	rec := a.post("/admin/users", "/admin/users/reset", url.Values{"username": {"gran"}})
	wantCode(t, rec, 200, "Password link for gran@example.org", `class="qr"`, "until 4 March 2025 12:00")
	m := resetRE.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no link: %s", rec.Body)
	}
	token := m[1]
	path := "/reset/" + token

	b := e.browser(internet, true)
	wantCode(t, b.do("GET", path, nil), 200, "A new password for gran@example.org", `autocomplete="new-password"`)
	form := url.Values{"password": {"new secret"}, "password2": {"new secret"}}
	wantCode(t, b.do("POST", path, form), http.StatusForbidden) // no CSRF token
	form.Set("password2", "typo")
	wantCode(t, b.post(path, path, form), http.StatusBadRequest, "not the same")
	form.Set("password2", "new secret")
	wantCode(t, b.post(path, path, form), 200, "Password changed")
	// Her devices are logged out and must use the new password.
	if cond := old.WaitClosed(); cond != "reset" {
		t.Fatalf("old stream ended with %q, want reset", cond)
	}
	c := xmpptest.Dial(t, addr, "example.org")
	c.Login("gran", "new secret", "tablet")
	// Used once only; unknown and expired links get a clear page.
	wantCode(t, b.do("GET", path, nil), http.StatusGone, "can no longer be used")
	wantCode(t, b.do("GET", "/reset/NOSUCHTOKEN", nil), http.StatusGone)
	rec = a.post("/admin/users", "/admin/users/reset", url.Values{"username": {"gran"}})
	token2 := resetRE.FindStringSubmatch(rec.Body.String())[1]
	e.clock.Advance(PasswordResetLifetime)
	wantCode(t, b.do("GET", "/reset/"+token2, nil), http.StatusGone)
	// Plain HTTP from the internet goes to HTTPS.
	if rec := e.browser(internet, false).do("GET", path, nil); rec.Code != http.StatusMovedPermanently {
		t.Fatalf("plain HTTP: %d", rec.Code)
	}
	// No token or password in the log.
	if logs := e.logs.String(); strings.Contains(logs, token) || strings.Contains(logs, token2) || strings.Contains(logs, "new secret") {
		t.Fatalf("secret in the log:\n%s", logs)
	}
}
