package contact

import (
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

func TestForm(t *testing.T) {
	form, err := Form(map[string][]string{
		"support-addresses": {"https://example.org/help", "xmpp:help@example.org"},
		"admin-addresses":   {" mailto:xmpp@example.org", "xmpp:admin@example.org", "mailto:xmpp@example.org"},
		"abuse-addresses":   nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `<x xmlns="jabber:x:data" type="result">` +
		`<field var="FORM_TYPE" type="hidden"><value>http://jabber.org/network/serverinfo</value></field>` +
		`<field var="admin-addresses" type="list-multi"><value>mailto:xmpp@example.org</value><value>xmpp:admin@example.org</value></field>` +
		`<field var="support-addresses" type="list-multi"><value>https://example.org/help</value><value>xmpp:help@example.org</value></field>` +
		`</x>`
	if got := form.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestInvalid(t *testing.T) {
	for name, addrs := range map[string]map[string][]string{
		"unknown field": {"admins": {"xmpp:a@example.org"}},
		"no scheme":     {"admin-addresses": {"admin@example.org"}},
		"empty":         {"abuse-addresses": {""}},
	} {
		e := modtest.New(t)
		if err := Register(e.S, addrs); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, _, forms := e.S.DiscoInfo(server.ToServer); len(forms) != 0 {
			t.Errorf("%s: form added despite the error", name)
		}
	}
}

func TestRegister(t *testing.T) {
	e := modtest.New(t)
	if err := Register(e.S, map[string][]string{"abuse-addresses": {}}); err != nil {
		t.Fatal(err)
	}
	if _, _, forms := e.S.DiscoInfo(server.ToServer); len(forms) != 0 {
		t.Fatalf("form added without any address: %v", forms)
	}
	if err := Register(e.S, map[string][]string{"security-addresses": {"mailto:security@example.org"}}); err != nil {
		t.Fatal(err)
	}
	_, _, forms := e.S.DiscoInfo(server.ToServer)
	if len(forms) != 1 || forms[0].Elements()[1].ChildText(NSData, "value") != "mailto:security@example.org" {
		t.Fatalf("forms = %v", forms)
	}
	if _, _, forms := e.S.DiscoInfo(server.ToAccount); len(forms) != 0 {
		t.Errorf("account disco#info has forms: %v", forms)
	}
}
