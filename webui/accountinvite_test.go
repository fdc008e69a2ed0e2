package webui

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
)

const qrMark = `<svg xmlns="http://www.w3.org/2000/svg" class="qr"`

// TestAccountInviteNormal: a normal member invites from the account page
// (link, xmpp: URI and QR code shown), into their own circles only, sees
// their pending invitations and revokes their own, never someone else's.
func TestAccountInviteNormal(t *testing.T) {
	e := newEnv(t)
	e.setUp()
	ctx := context.Background()
	e.user("mum")
	e.user("dad")
	if err := e.st.JoinCircle(ctx, "Family", "mum"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.CreateCircle(ctx, "Work", ""); err != nil {
		t.Fatal(err)
	}
	b := e.userLogin("mum")
	wantCode(t, b.do("GET", "/account", nil), 200, "Invite someone", `action="/account/invites/create"`, `value="Family"`)
	if strings.Contains(b.do("GET", "/account", nil).Body.String(), `value="Work"`) {
		t.Fatal("a circle mum is not in is offered")
	}

	form := url.Values{"kind": {"single"}, "expires": {"1d"}, "note": {"for Grandma"}, "circle": {"Family"}}
	// Without the CSRF token: refused, nothing created.
	wantCode(t, b.do("POST", "/account/invites/create", form), http.StatusForbidden)
	if invs, _ := e.inv.List(ctx); len(invs) != 0 {
		t.Fatalf("created without CSRF: %+v", invs)
	}
	rec := b.post("/account", "/account/invites/create", form)
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/account?invite=") {
		t.Fatalf("create: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	invs, _ := e.inv.List(ctx)
	if len(invs) != 1 {
		t.Fatalf("%d invitations", len(invs))
	}
	inv := invs[0]
	if inv.Inviter != "mum" || inv.Role != store.RoleNormal || inv.MaxUses != 1 || inv.Note != "for Grandma" ||
		len(inv.Circles) != 1 || inv.Circles[0] != "Family" || inv.Expires.Sub(inv.Created) != 24*time.Hour {
		t.Fatalf("invitation %+v", inv)
	}
	page := b.do("GET", location(rec), nil)
	wantCode(t, page, 200, "New invitation", "/invite/"+inv.Token, qrMark, `role="img"`,
		"xmpp:example.org?register;preauth="+inv.Token, "for Grandma", `action="/account/invites/revoke"`)

	// Circles: only mum's own; a group invitation is allowed.
	form.Set("circle", "Work")
	wantCode(t, b.post("/account", "/account/invites/create", form), http.StatusForbidden, "circles you belong to")
	form.Del("circle")
	form.Set("kind", "group")
	form.Set("expires", "5w")
	wantCode(t, b.post("/account", "/account/invites/create", form), http.StatusBadRequest, "four weeks")
	form.Set("expires", "4w")
	if rec := b.post("/account", "/account/invites/create", form); rec.Code != http.StatusSeeOther {
		t.Fatalf("group: %d %s", rec.Code, rec.Body)
	}
	mine, _ := e.inv.ListFor(ctx, "mum")
	if len(mine) != 2 || !slices.ContainsFunc(mine, func(i store.Invite) bool { return i.MaxUses == 0 && len(i.Circles) == 0 && i.Token != inv.Token }) {
		t.Fatalf("mum's invitations %+v", mine)
	}

	// Dad's invitation: mum can neither see nor revoke it.
	dads, err := e.inv.CreateFor(ctx, "dad", invite.Options{Note: "dad's secret"})
	if err != nil {
		t.Fatal(err)
	}
	page = b.do("GET", "/account?invite="+dads.Token, nil)
	wantCode(t, page, 200)
	if s := page.Body.String(); strings.Contains(s, dads.Token) || strings.Contains(s, "dad's secret") || strings.Contains(s, "New invitation") {
		t.Fatal("mum's page shows dad's invitation")
	}
	wantCode(t, b.post("/account", "/account/invites/revoke", url.Values{"token": {dads.Token}}), http.StatusNotFound)
	wantCode(t, b.post("/account", "/account/invites/revoke", url.Values{"token": {"NOSUCHTOKEN"}}), http.StatusNotFound)
	if _, err := e.inv.Check(ctx, dads.Token); err != nil {
		t.Fatalf("dad's invitation after mum's revoke: %v", err)
	}

	// Mum revokes her own: not without CSRF, then yes.
	revoke := url.Values{"token": {inv.Token}}
	wantCode(t, b.do("POST", "/account/invites/revoke", revoke), http.StatusForbidden)
	if _, err := e.inv.Check(ctx, inv.Token); err != nil {
		t.Fatalf("revoked without CSRF: %v", err)
	}
	if rec := b.post("/account", "/account/invites/revoke", revoke); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/account?done=revoked" {
		t.Fatalf("revoke: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if _, err := e.inv.Check(ctx, inv.Token); !errors.Is(err, invite.ErrRevoked) {
		t.Fatalf("after revoke: %v", err)
	}
	page = b.do("GET", "/account?done=revoked", nil)
	wantCode(t, page, 200, "invitation is revoked")
	if strings.Contains(page.Body.String(), inv.Token) {
		t.Fatal("the revoked invitation is still listed")
	}
	wantCode(t, b.post("/account", "/account/invites/nonsense", nil), http.StatusNotFound)
}

// TestAccountInviteLimited: a limited account is told to ask an
// administrator and cannot create an invitation by posting anyway.
func TestAccountInviteLimited(t *testing.T) {
	e := newEnv(t)
	e.setUp()
	ctx := context.Background()
	e.user("kid")
	if err := e.st.SetRole(ctx, "kid", store.RoleLimited); err != nil {
		t.Fatal(err)
	}
	b := e.userLogin("kid")
	page := b.do("GET", "/account", nil)
	wantCode(t, page, 200, "Invite someone", "ask an administrator")
	if strings.Contains(page.Body.String(), `action="/account/invites/create"`) {
		t.Fatal("a limited account is offered the invitation form")
	}
	wantCode(t, b.post("/account", "/account/invites/create", url.Values{"kind": {"single"}, "expires": {"7d"}}), http.StatusForbidden, "ask an administrator")
	if invs, _ := e.inv.List(ctx); len(invs) != 0 {
		t.Fatalf("a limited account invited: %+v", invs)
	}
}

// TestAccountInviteAdmin: an administrator has the section too.
func TestAccountInviteAdmin(t *testing.T) {
	e := newEnv(t)
	e.setUp()
	b := e.userLogin("founder")
	rec := b.post("/account", "/account/invites/create", url.Values{"kind": {"single"}, "expires": {"7d"}})
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	wantCode(t, b.do("GET", location(rec), nil), 200, "New invitation", qrMark)
	if invs, _ := e.inv.ListFor(context.Background(), "founder"); len(invs) != 1 || invs[0].Role != store.RoleNormal {
		t.Fatalf("founder's invitations %+v", invs)
	}
}

// location is the redirect target of rec without its #fragment, as a
// browser requests it.
func location(rec *httptest.ResponseRecorder) string {
	l, _, _ := strings.Cut(rec.Header().Get("Location"), "#")
	return l
}
