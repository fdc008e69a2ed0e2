package adhoc

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// invitation checks an XEP-0401 §5.1 result form and returns the stored
// invitation its token names.
func invitation(t *testing.T, e *env, cmd *xmlel.Element, uriPrefix, uriSuffix string) store.Invite {
	t.Helper()
	x := cmd.Child(NSData, "x")
	if x == nil || x.Get("type") != FormResult || FormValue(x, "FORM_TYPE") != InvitationFormType {
		t.Fatalf("no invitation result form: %s", cmd)
	}
	uri := FormValue(x, "uri")
	if !strings.HasPrefix(uri, uriPrefix) || !strings.HasSuffix(uri, uriSuffix) {
		t.Fatalf("uri %q, want %q…%q", uri, uriPrefix, uriSuffix)
	}
	token, err := url.QueryUnescape(strings.TrimSuffix(strings.TrimPrefix(uri, uriPrefix), uriSuffix))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := e.Store.Invite(context.Background(), token)
	if err != nil {
		t.Fatalf("the invitation of %q is not stored: %v", uri, err)
	}
	if got, want := FormValue(x, "landing-url"), invite.Link(base, token); got != want {
		t.Errorf("landing-url %q, want %q", got, want)
	}
	exp, err := time.Parse(time.RFC3339, FormValue(x, "expire"))
	if err != nil || !exp.Equal(inv.Expires.Truncate(time.Second)) {
		t.Errorf("expire %q (%v), want %v", FormValue(x, "expire"), err, inv.Expires)
	}
	return inv
}

// TestInvite: a normal account gets an invitation at once (XEP-0401 §5.1),
// stored with it as inviter; a limited account is refused.
func TestInvite(t *testing.T) {
	e := newEnv(t)
	alice := e.Connect("alice", "secret")
	cmd := result(t, command(alice, NodeInvite, "", ActionExecute, ""), StatusCompleted)
	inv := invitation(t, e, cmd, "xmpp:alice@"+modtest.Domain+"?roster;preauth=", ";ibr=y")
	if inv.Inviter != "alice" || inv.Role != store.RoleNormal || inv.MaxUses != 1 {
		t.Fatalf("stored invitation %+v", inv)
	}
	if want := modtest.Start.Add(invite.DefaultExpiry); !inv.Expires.Equal(want) {
		t.Fatalf("expires %v, want %v", inv.Expires, want)
	}
	if n := e.svc.sessions.count(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}

	lim := e.Connect("lim", "secret")
	wantCmdError(t, command(lim, NodeInvite, "", "", ""), "forbidden", "")
	invs, err := e.Store.Invites(context.Background())
	if err != nil || len(invs) != 1 {
		t.Fatalf("invitations %v, %v: want only alice's", invs, err)
	}
}

// TestInviteRoleChange: the role is checked again at execution, and
// CreateFor's refusal becomes forbidden.
func TestInviteRoleChange(t *testing.T) {
	e := newEnv(t)
	alice := e.Connect("alice", "secret")
	if err := e.Store.SetRole(context.Background(), "alice", store.RoleLimited); err != nil {
		t.Fatal(err)
	}
	wantCmdError(t, command(alice, NodeInvite, "", "", ""), "forbidden", "")
	// A CreateFor refusal the Allowed check did not foresee.
	e.svc.mu.Lock()
	e.svc.cmds[NodeInvite].Allowed = nil
	e.svc.mu.Unlock()
	iq := command(alice, NodeInvite, "", "", "")
	wantCmdError(t, iq, "forbidden", "")
	if !strings.Contains(iq.String(), "cannot invite") {
		t.Fatalf("no reason in %s", iq)
	}
}

// TestCreateAccount: an administrator chooses the role in a form, then
// gets an account invitation (XEP-0401 §5.4); others are refused.
func TestCreateAccount(t *testing.T) {
	e := newEnv(t)
	root := e.Connect("root", "secret")
	cmd := result(t, command(root, NodeCreateAccount, "", "", ""), StatusExecuting)
	sid := cmd.Get("sessionid")
	form := cmd.Child(NSData, "x")
	if form == nil || form.Get("type") != FormForm || FormValue(form, "role") != store.RoleNormal || cmd.Child(NS, "actions").Get("execute") != ActionComplete {
		t.Fatalf("create-account form: %s", cmd)
	}
	wantCmdError(t, command(root, NodeCreateAccount, sid, ActionComplete, submit("role", "king")), "bad-request", "bad-payload")
	cmd = result(t, command(root, NodeCreateAccount, sid, ActionComplete, submit("role", "limited")), StatusCompleted)
	inv := invitation(t, e, cmd, "xmpp:"+modtest.Domain+"?register;preauth=", "")
	if inv.Role != store.RoleLimited || inv.Inviter != "root" {
		t.Fatalf("stored invitation %+v", inv)
	}
	// A form submitted with the first request is taken at once.
	cmd = result(t, command(root, NodeCreateAccount, "", "", submit("role", "admin")), StatusCompleted)
	if inv := invitation(t, e, cmd, "xmpp:"+modtest.Domain+"?register;preauth=", ""); inv.Role != store.RoleAdmin {
		t.Fatalf("stored invitation %+v", inv)
	}

	// A cancelled form (XEP-0004 §3.1) or none at all creates nothing.
	before, err := e.Store.Invites(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sid = result(t, command(root, NodeCreateAccount, "", "", ""), StatusExecuting).Get("sessionid")
	result(t, command(root, NodeCreateAccount, sid, ActionComplete, "<x xmlns='jabber:x:data' type='cancel'/>"), StatusCanceled)
	sid = result(t, command(root, NodeCreateAccount, "", "", ""), StatusExecuting).Get("sessionid")
	wantCmdError(t, command(root, NodeCreateAccount, sid, ActionComplete, ""), "bad-request", "bad-payload")
	if after, err := e.Store.Invites(context.Background()); err != nil || len(after) != len(before) {
		t.Fatalf("invitations after a cancelled and an empty form: %d, want %d (%v)", len(after), len(before), err)
	}

	alice := e.Connect("alice", "secret")
	wantCmdError(t, command(alice, NodeCreateAccount, "", "", ""), "forbidden", "")
}
