package register

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// checkPassword reports whether every stored credential of user matches pw.
func checkPassword(t *testing.T, e *modtest.Env, user, pw string) bool {
	t.Helper()
	ok := true
	for _, hash := range []string{auth.HashSHA1, auth.HashSHA256, auth.HashSHA512} {
		k, err := e.Store.Credentials(context.Background(), user, hash)
		if err != nil {
			t.Fatal(err)
		}
		c := auth.Credential{Hash: k.Hash, Salt: k.Salt, Iterations: k.Iterations, StoredKey: k.StoredKey, ServerKey: k.ServerKey}
		ok = ok && auth.VerifyPassword(c, pw)
	}
	return ok
}

func TestGet(t *testing.T) {
	e := modtest.New(t)
	res, err := (&handler{s: e.S}).get(context.Background(),
		e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='jabber:iq:register'/>`))
	if err != nil {
		t.Fatal(err)
	}
	want := `<query xmlns="jabber:iq:register"><registered/><username>alice</username><password/></query>`
	if got := res.String(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestChangePassword(t *testing.T) {
	e := modtest.New(t)
	ctx := context.Background()
	h := &handler{s: e.S}
	e.AddUser("alice", "old")
	e.AddUser("bob", "bobpw")

	for _, tc := range []struct{ name, payload, want string }{
		{"no username", `<password>new</password>`, "bad-request"},
		{"no password", `<username>alice</username>`, "bad-request"},
		{"other user", `<username>bob</username><password>new</password>`, "bad-request"},
		{"other domain", `<username>alice@elsewhere.example</username><password>new</password>`, "bad-request"},
		{"empty password", `<username>alice</username><password/>`, "not-acceptable"},
		{"control character", `<username>alice</username><password>a&#x85;b</password>`, "not-acceptable"},
		{"too long", `<username>alice</username><password>` + strings.Repeat("x", MaxPasswordBytes+1) + `</password>`, "not-acceptable"},
		{"remove", `<remove/>`, "not-allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iq := e.IQ("set", "alice@example.org/a", "example.org", `<query xmlns='jabber:iq:register'>`+tc.payload+`</query>`)
			_, err := h.change(ctx, iq)
			modtest.WantCondition(t, err, tc.want)
			// The error reply must not carry the password back (XEP-0077 §3.3).
			var se *server.StanzaError
			if !errors.As(err, &se) {
				t.Fatalf("not a stanza error: %v", err)
			}
			if reply := server.ErrorReply(iq.Stanza, se).String(); strings.Contains(reply, "new") || strings.Contains(reply, "xxx") {
				t.Errorf("error reply echoes the request: %s", reply)
			}
		})
	}
	if !checkPassword(t, e, "alice", "old") {
		t.Fatal("a refused change altered the password")
	}

	// Username as localpart (case-folded by PRECIS) or as bare JID; no 'to'
	// (handled for the server, so To is the account) or to the server.
	for i, req := range []struct{ to, username string }{
		{"example.org", "alice"},
		{"", "ALICE"},
		{"example.org", "alice@example.org"},
	} {
		pw := "n\u00e9w-" + strings.Repeat("!", i)
		_, err := h.change(ctx, e.IQ("set", "alice@example.org/a", req.to,
			`<query xmlns='jabber:iq:register'><username>`+req.username+`</username><password>`+pw+`</password></query>`))
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		if !checkPassword(t, e, "alice", pw) {
			t.Fatalf("change %d: new password does not verify", i)
		}
	}
	if !checkPassword(t, e, "bob", "bobpw") {
		t.Fatal("bob's password changed")
	}
}

func TestOverTheWire(t *testing.T) {
	e := modtest.New(t)
	Register(e.S)
	e.AddUser("alice", "old")
	c := e.Connect("alice", "old")

	r := c.Request("get", "", `<query xmlns='jabber:iq:register'/>`)
	if q := r.Child(NS, "query"); q == nil || q.Child(NS, "registered") == nil || q.ChildText(NS, "username") != "alice" {
		t.Fatalf("get: %s", r)
	}
	r = c.Request("set", "example.org", `<query xmlns='jabber:iq:register'><username>bob</username><password>hunter2</password></query>`)
	modtest.WantIQError(t, r, "bad-request")
	if strings.Contains(r.String(), "hunter2") {
		t.Errorf("error reply echoes the password: %s", r)
	}
	modtest.WantIQError(t, c.Request("set", "", `<query xmlns='jabber:iq:register'><remove/></query>`), "not-allowed")
	modtest.WantIQError(t, c.Request("set", "", `<query xmlns='jabber:iq:register'><username>alice</username><password>hunter2</password></query>`), "")

	if _, err := e.Dial("alice", "old"); err == nil {
		t.Error("the old password still works")
	}
	e.Connect("alice", "hunter2").Close()
}
