package adhoc

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

const (
	testTimeout = 5 * time.Minute
	wizardNode  = "test:wizard"
	base        = "https://example.org:8443"
)

// env is a server with disco, ad-hoc commands (the invitation commands
// and a test wizard), and the accounts alice (normal), lim (limited) and
// root (admin).
type env struct {
	*modtest.Env
	svc *Service
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	e := modtest.New(t)
	disco.Register(e.S)
	svc := Register(e.S, append([]Option{SessionTimeout(testTimeout)}, opts...)...)
	invites := invite.New(invite.Config{Store: e.Store, Domain: modtest.Domain, Now: e.Clock.Now})
	svc.AddInviteCommands(InviteConfig{Invites: invites, BaseURL: base})
	svc.Add(wizard())
	for user, role := range map[string]string{"alice": store.RoleNormal, "lim": store.RoleLimited, "root": store.RoleAdmin} {
		e.AddUser(user, "secret")
		if err := e.Store.SetRole(context.Background(), user, role); err != nil {
			t.Fatal(err)
		}
	}
	return &env{Env: e, svc: svc}
}

// wizard is a two-stage test command: stage 1 asks for a name (next),
// stage 2 shows a greeting to confirm (prev, complete; default complete),
// completing says hello.
func wizard() Command {
	ask := func(name string) *Response {
		f := NewForm(FormForm, "Name", "")
		f.Add(Required(Field("name", "text-single", "Your name", name)))
		return &Response{Status: StatusExecuting, Actions: []string{ActionNext}, Default: ActionNext, Payload: []*xmlel.Element{f}, State: name}
	}
	return Command{Node: wizardNode, Name: "Wizard", Execute: func(_ context.Context, r *Request) (*Response, error) {
		switch {
		case r.Stage == 0:
			return ask(""), nil
		case r.Action == ActionNext:
			name := FormValue(r.Form, "name")
			if name == "" {
				return nil, BadPayload("a name is required")
			}
			f := NewForm(FormForm, "Confirm", "Say hello to "+name+"?")
			return &Response{Status: StatusExecuting, Actions: []string{ActionPrev, ActionComplete}, Default: ActionComplete,
				Payload: []*xmlel.Element{f}, State: name}, nil
		case r.Action == ActionPrev:
			return ask(r.State.(string)), nil
		default:
			return &Response{Notes: []Note{{Text: fmt.Sprintf("Hello %s (stage %d)", r.State, r.Stage)}}}, nil
		}
	}}
}

// command sends a <command/> IQ set to the domain.
func command(c *modtest.Client, node, sid, action, inner string) *xmlel.Element {
	c.T.Helper()
	attrs := "node='" + node + "'"
	if sid != "" {
		attrs += " sessionid='" + sid + "'"
	}
	if action != "" {
		attrs += " action='" + action + "'"
	}
	return c.Request("set", modtest.Domain, "<command xmlns='"+NS+"' "+attrs+">"+inner+"</command>")
}

// result returns the <command/> of a result IQ, failing otherwise.
func result(t *testing.T, iq *xmlel.Element, status Status) *xmlel.Element {
	t.Helper()
	if iq.Get("type") != "result" {
		t.Fatalf("got %s, want a result", iq)
	}
	cmd := iq.Child(NS, "command")
	if cmd == nil || cmd.Get("status") != string(status) || cmd.Get("sessionid") == "" {
		t.Fatalf("got %s, want a command with status %s and a sessionid", iq, status)
	}
	return cmd
}

// wantCmdError checks the general condition and the XEP-0050 §4.4
// specific condition ("" for none) of an error IQ.
func wantCmdError(t *testing.T, iq *xmlel.Element, cond, specific string) {
	t.Helper()
	modtest.WantIQError(t, iq, cond)
	e := iq.Child(server.NSClient, "error")
	got := ""
	for _, c := range e.Elements() {
		if c.Name.Space == NS {
			got = c.Name.Local
		}
	}
	if got != specific {
		t.Fatalf("got %s, want specific condition %q", iq, specific)
	}
}

func submit(fields ...string) string {
	s := "<x xmlns='jabber:x:data' type='submit'>"
	for i := 0; i+1 < len(fields); i += 2 {
		s += "<field var='" + fields[i] + "'><value>" + fields[i+1] + "</value></field>"
	}
	return s + "</x>"
}

func itemNodes(t *testing.T, c *modtest.Client) []string {
	t.Helper()
	iq := c.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoItems+"' node='"+NS+"'/>")
	if iq.Get("type") != "result" {
		t.Fatalf("command list: %s", iq)
	}
	var nodes []string
	for _, it := range iq.Child(NSDiscoItems, "query").ChildrenNamed(NSDiscoItems, "item") {
		if it.Get("jid") != modtest.Domain || it.Get("name") == "" {
			t.Fatalf("bad item %s", iq)
		}
		nodes = append(nodes, it.Get("node"))
	}
	return nodes
}

// TestCommandList: the feature on the server, the command list per role
// (XEP-0050 §2.1, §2.2; XEP-0401 §4), the command nodes' disco#info.
func TestCommandList(t *testing.T) {
	e := newEnv(t)
	alice, lim, root := e.Connect("alice", "secret"), e.Connect("lim", "secret"), e.Connect("root", "secret")

	info := alice.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoInfo+"'/>")
	found := false
	for _, f := range info.Child(NSDiscoInfo, "query").ChildrenNamed(NSDiscoInfo, "feature") {
		found = found || f.Get("var") == NS
	}
	if !found {
		t.Fatalf("server disco#info lacks %s: %s", NS, info)
	}
	for _, tc := range []struct {
		c    *modtest.Client
		want []string
	}{
		{alice, []string{NodeInvite, wizardNode}},
		{lim, []string{wizardNode}},
		{root, []string{NodeInvite, NodeCreateAccount, wizardNode}},
	} {
		if got := itemNodes(t, tc.c); !slices.Equal(got, tc.want) {
			t.Errorf("%s: commands %v, want %v", tc.c.JID, got, tc.want)
		}
	}

	q := alice.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoInfo+"' node='"+NodeInvite+"'/>")
	id := q.Child(NSDiscoInfo, "query").Child(NSDiscoInfo, "identity")
	if id == nil || id.Get("category") != "automation" || id.Get("type") != "command-node" {
		t.Fatalf("command node info: %s", q)
	}
	modtest.WantIQError(t, lim.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoInfo+"' node='"+NodeInvite+"'/>"), "forbidden")
	modtest.WantIQError(t, alice.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoInfo+"' node='"+NodeCreateAccount+"'/>"), "forbidden")
	q = alice.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoInfo+"' node='"+NS+"'/>")
	if id := q.Child(NSDiscoInfo, "query").Child(NSDiscoInfo, "identity"); id == nil || id.Get("type") != "command-list" {
		t.Fatalf("command list info: %s", q)
	}
	// Other nodes are still the disco module's.
	modtest.WantIQError(t, alice.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoInfo+"' node='nope'/>"), "item-not-found")
	modtest.WantIQError(t, alice.Request("get", modtest.Domain, "<query xmlns='"+NSDiscoItems+"' node='nope'/>"), "item-not-found")
}

// TestErrors: unknown node, malformed requests (XEP-0050 §4.4).
func TestErrors(t *testing.T) {
	e := newEnv(t)
	alice := e.Connect("alice", "secret")
	wantCmdError(t, command(alice, "urn:example:nope", "", "", ""), "item-not-found", "")
	wantCmdError(t, command(alice, "", "", "", ""), "bad-request", "")
	wantCmdError(t, command(alice, wizardNode, "", "jump", ""), "bad-request", "malformed-action")
	wantCmdError(t, command(alice, wizardNode, "", ActionNext, ""), "bad-request", "bad-sessionid")
	wantCmdError(t, command(alice, wizardNode, "nosuchsession", ActionNext, ""), "bad-request", "bad-sessionid")
	modtest.WantIQError(t, alice.Request("get", modtest.Domain, "<command xmlns='"+NS+"' node='"+wizardNode+"'/>"), "bad-request")
	if n := e.svc.sessions.count(); n != 0 {
		t.Fatalf("%d sessions left after errors", n)
	}
}

// TestMultiStage runs the wizard through next, prev, the default action
// and complete, then checks ended and foreign sessions (XEP-0050 §2.4.2,
// §3.3, §3.4).
func TestMultiStage(t *testing.T) {
	e := newEnv(t)
	alice := e.Connect("alice", "secret")
	cmd := result(t, command(alice, wizardNode, "", ActionExecute, ""), StatusExecuting)
	sid := cmd.Get("sessionid")
	acts := cmd.Child(NS, "actions")
	if acts == nil || acts.Get("execute") != ActionNext || acts.Child(NS, "next") == nil || cmd.Child(NSData, "x") == nil {
		t.Fatalf("stage 1: %s", cmd)
	}
	// Stage 1 allows only next.
	wantCmdError(t, command(alice, wizardNode, sid, ActionComplete, ""), "bad-request", "bad-action")
	// A missing required field: bad-payload, and the session stays.
	wantCmdError(t, command(alice, wizardNode, sid, ActionNext, submit("name", "")), "bad-request", "bad-payload")
	cmd = result(t, command(alice, wizardNode, sid, ActionNext, submit("name", "Ann")), StatusExecuting)
	if cmd.Get("sessionid") != sid || cmd.Child(NS, "actions").Get("execute") != ActionComplete {
		t.Fatalf("stage 2: %s", cmd)
	}
	cmd = result(t, command(alice, wizardNode, sid, ActionPrev, ""), StatusExecuting)
	if FormValue(cmd.Child(NSData, "x"), "name") != "Ann" {
		t.Fatalf("prev did not return to stage 1 with the name: %s", cmd)
	}
	result(t, command(alice, wizardNode, sid, "", submit("name", "Bob")), StatusExecuting) // execute = next
	// Another resource of the same account may not use the session.
	other := e.Connect("alice", "secret")
	wantCmdError(t, command(other, wizardNode, sid, ActionComplete, ""), "bad-request", "bad-sessionid")
	// Nor may the session be used for another node.
	wantCmdError(t, command(alice, NodeInvite, sid, ActionComplete, ""), "bad-request", "bad-sessionid")
	cmd = result(t, command(alice, wizardNode, sid, ActionExecute, ""), StatusCompleted) // execute = complete
	if note := cmd.Child(NS, "note"); note == nil || note.Text() != "Hello Bob (stage 4)" || note.Get("type") != NoteInfo || cmd.Child(NS, "actions") != nil {
		t.Fatalf("completed: %s", cmd)
	}
	wantCmdError(t, command(alice, wizardNode, sid, ActionNext, ""), "not-allowed", "session-expired")
	if n := e.svc.sessions.count(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

// TestCancel: cancel ends the session with status canceled (XEP-0050
// §2.4.3).
func TestCancel(t *testing.T) {
	e := newEnv(t)
	alice := e.Connect("alice", "secret")
	sid := result(t, command(alice, wizardNode, "", "", ""), StatusExecuting).Get("sessionid")
	cmd := result(t, command(alice, wizardNode, sid, ActionCancel, ""), StatusCanceled)
	if cmd.Get("sessionid") != sid || cmd.Get("node") != wizardNode {
		t.Fatalf("cancel: %s", cmd)
	}
	wantCmdError(t, command(alice, wizardNode, sid, ActionNext, submit("name", "Ann")), "not-allowed", "session-expired")
	if n := e.svc.sessions.count(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

// TestSessionExpiry: a session waiting longer than the timeout has
// expired (XEP-0050 §3.3, §4.4).
func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	alice := e.Connect("alice", "secret")
	sid := result(t, command(alice, wizardNode, "", "", ""), StatusExecuting).Get("sessionid")
	e.Clock.Advance(testTimeout - time.Second)
	sid2 := result(t, command(alice, wizardNode, sid, ActionNext, submit("name", "Ann")), StatusExecuting).Get("sessionid")
	if sid2 != sid {
		t.Fatalf("session id changed from %q to %q", sid, sid2)
	}
	// Each stage restarts the wait.
	e.Clock.Advance(testTimeout)
	wantCmdError(t, command(alice, wizardNode, sid, ActionComplete, ""), "not-allowed", "session-expired")
	if n := e.svc.sessions.count(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

// TestSessionLimit: an account has at most MaxSessions sessions; ended or
// expired ones free their place, and a closed stream drops its sessions.
func TestSessionLimit(t *testing.T) {
	e := newEnv(t, MaxSessions(2))
	alice := e.Connect("alice", "secret")
	sid := result(t, command(alice, wizardNode, "", "", ""), StatusExecuting).Get("sessionid")
	result(t, command(alice, wizardNode, "", "", ""), StatusExecuting)
	modtest.WantIQError(t, command(alice, wizardNode, "", "", ""), "not-allowed")
	// Another account is not affected.
	root := e.Connect("root", "secret")
	result(t, command(root, wizardNode, "", "", ""), StatusExecuting)
	result(t, command(alice, wizardNode, sid, ActionCancel, ""), StatusCanceled)
	result(t, command(alice, wizardNode, "", "", ""), StatusExecuting)
	e.Clock.Advance(testTimeout)
	result(t, command(alice, wizardNode, "", "", ""), StatusExecuting)
	if n := e.svc.sessions.count(); n != 2 {
		t.Fatalf("%d sessions, want 2 (alice's new one, root's)", n)
	}
	root.Close()
	modtest.Eventually(t, "root's session to be dropped", func() bool { return e.svc.sessions.count() == 1 })
}

// TestCommandPanic: a command that panics answers internal-server-error
// and does not keep its session: the account's session slots stay free.
func TestCommandPanic(t *testing.T) {
	e := newEnv(t, MaxSessions(1))
	e.svc.Add(Command{Node: "test:panic", Name: "Panic", Execute: func(_ context.Context, r *Request) (*Response, error) {
		if r.Stage > 0 {
			panic("boom")
		}
		return &Response{Status: StatusExecuting, Actions: []string{ActionComplete}, Default: ActionComplete}, nil
	}})
	alice := e.Connect("alice", "secret")
	for range 3 {
		sid := result(t, command(alice, "test:panic", "", "", ""), StatusExecuting).Get("sessionid")
		modtest.WantIQError(t, command(alice, "test:panic", sid, ActionComplete, ""), "internal-server-error")
	}
	if n := e.svc.sessions.count(); n != 0 {
		t.Fatalf("%d sessions left after panics", n)
	}
}
