package private

import (
	"context"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
)

const (
	getPrefs = `<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>`
	setPrefs = `<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus></query>`
)

func TestGetSet(t *testing.T) {
	e := modtest.New(t)
	ctx := context.Background()
	h := &handler{s: e.S, max: DefaultMaxBytes}
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")

	// Nothing stored: the child comes back as sent.
	res, err := h.get(ctx, e.IQ("get", "alice@example.org/a", "", getPrefs))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.String(), `<query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"/></query>`; got != want {
		t.Errorf("unset: got %s, want %s", got, want)
	}

	_, err = h.set(ctx, e.IQ("set", "alice@example.org/a", "", setPrefs))
	modtest.WantCondition(t, err, "")
	_, err = h.set(ctx, e.IQ("set", "alice@example.org/a", "alice@example.org",
		`<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='x@muc.example.org' autojoin='true'/></storage></query>`))
	modtest.WantCondition(t, err, "")

	res, err = h.get(ctx, e.IQ("get", "alice@example.org/a", "alice@example.org", getPrefs))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.String(), `<query xmlns="jabber:iq:private"><exodus xmlns="exodus:prefs"><defaultnick>Hamlet</defaultnick></exodus></query>`; got != want {
		t.Errorf("stored: got %s, want %s", got, want)
	}
	res, err = h.get(ctx, e.IQ("get", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`))
	if err != nil || res.FirstElement().Child("storage:bookmarks", "conference").Get("jid") != "x@muc.example.org" {
		t.Errorf("bookmarks: %v, %v", res, err)
	}
	// bob's storage is separate.
	res, err = h.get(ctx, e.IQ("get", "bob@example.org/b", "", getPrefs))
	if err != nil || len(res.FirstElement().Children) != 0 {
		t.Errorf("bob sees alice's data: %v, %v", res, err)
	}

	// An empty child deletes.
	_, err = h.set(ctx, e.IQ("set", "alice@example.org/a", "", getPrefs))
	modtest.WantCondition(t, err, "")
	res, _ = h.get(ctx, e.IQ("get", "alice@example.org/a", "", getPrefs))
	if len(res.FirstElement().Children) != 0 {
		t.Errorf("after delete: %s", res)
	}
}

func TestErrors(t *testing.T) {
	e := modtest.New(t)
	ctx := context.Background()
	h := &handler{s: e.S, max: 100}
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	for _, tc := range []struct {
		name, from, to, payload, want string
	}{
		{"other user", "bob@example.org/b", "alice@example.org", setPrefs, "forbidden"},
		{"no child", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'/>`, "bad-request"},
		{"text only", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'>hello</query>`, "bad-request"},
		{"two children", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'><a xmlns='x'/><b xmlns='y'/></query>`, "bad-request"},
		{"inherited namespace", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'><prefs/></query>`, "not-acceptable"},
		{"jabber:client", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'><message xmlns='jabber:client'/></query>`, "not-acceptable"},
		{"jabber:server", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'><message xmlns='jabber:server'/></query>`, "not-acceptable"},
		{"too large", "alice@example.org/a", "", `<query xmlns='jabber:iq:private'><p xmlns='x'>` + strings.Repeat("z", 100) + `</p></query>`, "not-acceptable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.set(ctx, e.IQ("set", tc.from, tc.to, tc.payload))
			modtest.WantCondition(t, err, tc.want)
			if tc.name == "too large" {
				return
			}
			_, err = h.get(ctx, e.IQ("get", tc.from, tc.to, tc.payload))
			modtest.WantCondition(t, err, tc.want)
		})
	}
}

func TestOverTheWire(t *testing.T) {
	e := modtest.New(t)
	Register(e.S)
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	modtest.WantIQError(t, alice.Request("set", "", setPrefs), "")
	r := alice.Request("get", "", getPrefs)
	if q := r.Child(NS, "query"); q == nil || q.Child("exodus:prefs", "exodus").ChildText("exodus:prefs", "defaultnick") != "Hamlet" {
		t.Fatalf("get: %s", r)
	}
	modtest.WantIQError(t, bob.Request("get", "alice@example.org", getPrefs), "forbidden")
	modtest.WantIQError(t, bob.Request("get", "nobody@example.org", getPrefs), "service-unavailable")
}
