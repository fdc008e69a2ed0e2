package version

import (
	"context"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
)

func TestGet(t *testing.T) {
	e := modtest.New(t)
	ctx := context.Background()
	iq := e.IQ("get", "alice@example.org/a", "example.org", `<query xmlns='jabber:iq:version'/>`)

	res, err := (&handler{s: e.S}).get(ctx, iq)
	if err != nil {
		t.Fatal(err)
	}
	want := `<query xmlns="jabber:iq:version"><name>Hearth</name><version>1.2.3-test</version></query>`
	if got := res.String(); got != want {
		t.Errorf("got %s, want %s (no <os/> by default)", got, want)
	}

	res, err = (&handler{s: e.S, os: "Linux"}).get(ctx, iq)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.ChildText(NS, "os"); got != "Linux" {
		t.Errorf("os = %q, want Linux", got)
	}
}

func TestOverTheWire(t *testing.T) {
	e := modtest.New(t)
	Register(e.S, WithOS("Plan 9"))
	e.AddUser("alice", "secret")
	c := e.Connect("alice", "secret")
	for _, to := range []string{"example.org", ""} {
		r := c.Request("get", to, `<query xmlns='jabber:iq:version'/>`)
		q := r.Child(NS, "query")
		if r.Get("type") != "result" || q == nil || q.ChildText(NS, "name") != "Hearth" ||
			q.ChildText(NS, "version") != "1.2.3-test" || q.ChildText(NS, "os") != "Plan 9" {
			t.Errorf("version to %q: got %s", to, r)
		}
	}
}
