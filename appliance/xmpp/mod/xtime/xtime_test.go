package xtime

import (
	"context"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

func TestGet(t *testing.T) {
	e := modtest.New(t)
	e.Clock.Advance(90*time.Minute + 7*time.Second + 300*time.Millisecond)
	res, err := (&handler{s: e.S}).get(context.Background(),
		e.IQ("get", "alice@example.org/a", "example.org", `<time xmlns='urn:xmpp:time'/>`))
	if err != nil {
		t.Fatal(err)
	}
	want := `<time xmlns="urn:xmpp:time"><tzo>+00:00</tzo><utc>2025-03-01T13:30:07Z</utc></time>`
	if got := res.String(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestLocalClockReportedInUTC(t *testing.T) {
	zone := time.FixedZone("CST", -6*3600)
	e := modtest.New(t, func(c *server.Config) {
		c.Now = func() time.Time { return modtest.Start.In(zone) }
	})
	res, err := (&handler{s: e.S}).get(context.Background(),
		e.IQ("get", "alice@example.org/a", "", `<time xmlns='urn:xmpp:time'/>`))
	if err != nil {
		t.Fatal(err)
	}
	if utc, tzo := res.ChildText(NS, "utc"), res.ChildText(NS, "tzo"); utc != "2025-03-01T12:00:00Z" || tzo != "+00:00" {
		t.Errorf("utc, tzo = %q, %q; want 2025-03-01T12:00:00Z, +00:00", utc, tzo)
	}
}

func TestOverTheWire(t *testing.T) {
	e := modtest.New(t)
	Register(e.S)
	e.AddUser("alice", "secret")
	c := e.Connect("alice", "secret")
	r := c.Request("get", "", `<time xmlns='urn:xmpp:time'/>`)
	if tm := r.Child(NS, "time"); tm == nil || tm.ChildText(NS, "utc") != "2025-03-01T12:00:00Z" {
		t.Errorf("got %s", r)
	}
}
