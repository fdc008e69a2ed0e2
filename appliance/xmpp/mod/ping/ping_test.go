package ping

import (
	"context"
	"slices"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

const pingXML = `<ping xmlns='urn:xmpp:ping'/>`

func TestHandlers(t *testing.T) {
	e := modtest.New(t)
	h := &handler{s: e.S}
	ctx := context.Background()
	res, err := h.toServer(ctx, e.IQ("get", "alice@example.org/a", "example.org", pingXML))
	if res != nil || err != nil {
		t.Fatalf("ping server = %v, %v; want empty result", res, err)
	}
	for _, to := range []string{"", "alice@example.org"} {
		res, err = h.account(ctx, e.IQ("get", "alice@example.org/a", to, pingXML))
		if res != nil || err != nil {
			t.Fatalf("ping own account (to=%q) = %v, %v; want empty result", to, res, err)
		}
	}
	_, err = h.account(ctx, e.IQ("get", "alice@example.org/a", "bob@example.org", pingXML))
	modtest.WantCondition(t, err, "service-unavailable")
}

func TestOverTheWire(t *testing.T) {
	e := modtest.New(t)
	Register(e.S)
	e.AddUser("alice", "secret")
	c := e.Connect("alice", "secret")
	for _, to := range []string{"example.org", "", "alice@example.org"} {
		r := c.Request("get", to, pingXML)
		if r.Get("type") != "result" || len(r.Elements()) != 0 {
			t.Errorf("ping to %q: got %s, want empty result", to, r)
		}
	}
	if _, feats, _ := e.S.DiscoInfo(server.ToServer); !slices.Contains(feats, NS) {
		t.Errorf("server features %v lack %s", feats, NS)
	}
}
