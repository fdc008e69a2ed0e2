package vcard

import (
	"context"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
)

const (
	getXML  = `<vCard xmlns='vcard-temp'/>`
	cardXML = `<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al &amp; co</NICKNAME>` +
		`<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO><x xmlns='urn:example:ext' a='1'/></vCard>`
)

func TestGetSet(t *testing.T) {
	e := modtest.New(t)
	ctx := context.Background()
	h := &handler{s: e.S, max: DefaultMaxBytes}
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")

	// Own vCard before any was stored: empty (XEP-0054 §3.1).
	for _, to := range []string{"", "alice@example.org"} {
		res, err := h.get(ctx, e.IQ("get", "alice@example.org/a", to, getXML))
		if err != nil || res.String() != `<vCard xmlns="vcard-temp"/>` {
			t.Fatalf("own empty vCard (to=%q): %v, %v", to, res, err)
		}
	}
	// Someone else's missing vCard: same error as a missing account (§3.3).
	_, err := h.get(ctx, e.IQ("get", "bob@example.org/b", "alice@example.org", getXML))
	modtest.WantCondition(t, err, "service-unavailable")

	// Set is for one's own vCard only (§3.2).
	_, err = h.set(ctx, e.IQ("set", "bob@example.org/b", "alice@example.org", cardXML))
	modtest.WantCondition(t, err, "forbidden")
	_, err = h.set(ctx, e.IQ("set", "alice@example.org/a", "", cardXML))
	modtest.WantCondition(t, err, "")

	want := `<vCard xmlns="vcard-temp"><FN>Alice Liddell</FN><NICKNAME>al &amp; co</NICKNAME>` +
		`<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO><x xmlns="urn:example:ext" a="1"/></vCard>`
	for _, req := range [][2]string{{"alice@example.org/a", ""}, {"bob@example.org/b", "alice@example.org"}} {
		res, err := h.get(ctx, e.IQ("get", req[0], req[1], getXML))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.String(); got != want {
			t.Errorf("%s reading alice's vCard: got %s, want %s", req[0], got, want)
		}
	}
	// bob's own vCard is still empty.
	res, err := h.get(ctx, e.IQ("get", "bob@example.org/b", "", getXML))
	if err != nil || len(res.Elements()) != 0 {
		t.Errorf("bob's vCard: %v, %v", res, err)
	}

	// An empty vCard deletes it.
	_, err = h.set(ctx, e.IQ("set", "alice@example.org/a", "alice@example.org", getXML))
	modtest.WantCondition(t, err, "")
	_, err = h.get(ctx, e.IQ("get", "bob@example.org/b", "alice@example.org", getXML))
	modtest.WantCondition(t, err, "service-unavailable")
}

func TestSizeLimit(t *testing.T) {
	e := modtest.New(t)
	ctx := context.Background()
	e.AddUser("alice", "pw")
	h := &handler{s: e.S, max: DefaultMaxBytes}
	MaxBytes(200)(h)
	MaxBytes(0)(h) // ignored
	small := `<vCard xmlns='vcard-temp'><FN>` + strings.Repeat("a", 100) + `</FN></vCard>`
	big := `<vCard xmlns='vcard-temp'><FN>` + strings.Repeat("a", 200) + `</FN></vCard>`
	_, err := h.set(ctx, e.IQ("set", "alice@example.org/a", "", small))
	modtest.WantCondition(t, err, "")
	_, err = h.set(ctx, e.IQ("set", "alice@example.org/a", "", big))
	modtest.WantCondition(t, err, "not-acceptable")
	res, err := h.get(ctx, e.IQ("get", "alice@example.org/a", "", getXML))
	if err != nil || len(res.ChildText("vcard-temp", "FN")) != 100 {
		t.Errorf("the refused vCard replaced the stored one: %v, %v", res, err)
	}
}

func TestOverTheWire(t *testing.T) {
	e := modtest.New(t)
	Register(e.S)
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")

	if r := alice.Request("set", "", cardXML); r.Get("type") != "result" {
		t.Fatalf("set: %s", r)
	}
	r := bob.Request("get", "alice@example.org", getXML)
	if v := r.Child(NS, "vCard"); v == nil || v.ChildText(NS, "FN") != "Alice Liddell" {
		t.Fatalf("bob reading alice's vCard: %s", r)
	}
	modtest.WantIQError(t, bob.Request("set", "alice@example.org", cardXML), "forbidden")
	modtest.WantIQError(t, bob.Request("get", "nobody@example.org", getXML), "service-unavailable")
	modtest.WantIQError(t, bob.Request("get", "", getXML), "")
	modtest.WantIQError(t, bob.Request("get", "example.org", getXML), "service-unavailable")
}
