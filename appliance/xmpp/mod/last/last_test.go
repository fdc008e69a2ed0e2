package last

import (
	"context"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

const lastXML = `<query xmlns='jabber:iq:last'/>`

func TestUptime(t *testing.T) {
	e := modtest.New(t)
	e.Clock.Advance(903*time.Second + 500*time.Millisecond)
	res, err := (&handler{s: e.S}).uptime(context.Background(), e.IQ("get", "alice@example.org/a", "example.org", lastXML))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.String(), `<query xmlns="jabber:iq:last" seconds="903"/>`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestAccount(t *testing.T) {
	e := modtest.New(t)
	ctx := context.Background()
	h := &handler{s: e.S}
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	e.AddUser("carol", "pw")
	e.AddUser("dave", "pw")
	e.Subscribe("alice", "bob@example.org", "from")
	e.Subscribe("alice", "carol@example.org", "to")
	e.Subscribe("alice", "dave@example.org", "both")

	ask := func(from, to string) (*xmlel.Element, error) {
		return h.account(ctx, e.IQ("get", from, to, lastXML))
	}
	// Not authorized to see alice's presence (XEP-0012 §3).
	for _, from := range []string{"carol@example.org/c", "eve@example.org/e", "mallory@evil.example/m"} {
		_, err := ask(from, "alice@example.org")
		modtest.WantCondition(t, err, "forbidden")
	}
	// Authorized, but alice never logged out.
	_, err := ask("bob@example.org/b", "alice@example.org")
	modtest.WantCondition(t, err, "item-not-found")

	if err := e.Store.SetLastActivity(ctx, "alice", e.Clock.Now(), "Heading Home"); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(903 * time.Second)
	want := `<query xmlns="jabber:iq:last" seconds="903">Heading Home</query>`
	for _, req := range [][2]string{
		{"bob@example.org/b", "alice@example.org"},
		{"dave@example.org/d", "alice@example.org"},
		{"alice@example.org/a", ""},
		{"alice@example.org/a", "alice@example.org"},
	} {
		res, err := ask(req[0], req[1])
		if err != nil {
			t.Fatalf("%s asking %q: %v", req[0], req[1], err)
		}
		if got := res.String(); got != want {
			t.Errorf("%s asking %q: got %s, want %s", req[0], req[1], got, want)
		}
	}
	// alice is not subscribed to bob's presence the other way round.
	_, err = ask("alice@example.org/a", "bob@example.org")
	modtest.WantCondition(t, err, "forbidden")
}

func TestOnlineAndLogout(t *testing.T) {
	e := modtest.New(t)
	Register(e.S)
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	e.Subscribe("alice", "bob@example.org", "both")
	e.Subscribe("bob", "alice@example.org", "both")

	bob := e.Connect("bob", "pw")
	alice := e.Connect("alice", "pw")
	// Connected but not available: alice is not online yet.
	modtest.WantIQError(t, bob.Request("get", "alice@example.org", lastXML), "item-not-found")

	alice.Send(xmlel.MustParse(`<presence xmlns='jabber:client'/>`))
	alice.Request("get", "example.org", lastXML) // the presence is processed before this
	r := bob.Request("get", "alice@example.org", lastXML)
	if q := r.Child(NS, "query"); q == nil || q.Get("seconds") != "0" || q.Text() != "" {
		t.Fatalf("alice online: got %s, want seconds 0", r)
	}

	alice.Send(xmlel.MustParse(`<presence xmlns='jabber:client' type='unavailable'><status>Heading Home</status></presence>`))
	alice.Close()
	modtest.Eventually(t, "alice's logout to be recorded", func() bool {
		accts, err := e.Store.Accounts(context.Background())
		return err == nil && !accts[0].LastLogout.IsZero()
	})
	e.Clock.Advance(2 * time.Minute)
	r = bob.Request("get", "alice@example.org", lastXML)
	if q := r.Child(NS, "query"); q == nil || q.Get("seconds") != "120" || q.Text() != "Heading Home" {
		t.Fatalf("alice offline: got %s, want 120 seconds, Heading Home", r)
	}
	r = bob.Request("get", "example.org", lastXML)
	if q := r.Child(NS, "query"); q == nil || q.Get("seconds") != "120" {
		t.Fatalf("uptime: got %s, want 120 seconds", r)
	}
}
