package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
	"mellium.im/xmpp/jid"
)

// echoComponent answers IQs, reflects messages and presence back to their
// sender from the addressed JID, and records what it received.
type echoComponent struct {
	srv  *server.Server
	mu   sync.Mutex
	seen []string // "<kind> <type> from"
}

func (c *echoComponent) HandleStanza(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	c.mu.Lock()
	c.seen = append(c.seen, st.Name.Local+" "+st.Get("type")+" "+from.String())
	c.mu.Unlock()
	switch st.Name.Local {
	case "iq":
		if t := st.Get("type"); t == "get" || t == "set" {
			c.srv.Route(ctx, xmlel.New(server.NSClient, "iq", "type", "result", "id", st.Get("id"), "from", to.String(), "to", from.String()))
		}
	case "message", "presence":
		r := st.ShallowCopy()
		r.Set("from", to.String())
		r.Set("to", from.String())
		c.srv.Route(ctx, r)
	}
}

func (c *echoComponent) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

func TestComponentRouting(t *testing.T) {
	comp := &echoComponent{}
	e := newEnv(t, server.Limits{}, func(s *server.Server) {
		comp.srv = s
		if err := s.AddComponent("echo."+domain, comp); err != nil {
			t.Fatal(err)
		}
		if s.AddComponent("echo."+domain, comp) == nil {
			t.Error("duplicate component domain accepted")
		}
		if s.AddComponent(domain, comp) == nil || s.AddComponent("a@b", comp) == nil {
			t.Error("invalid component domain accepted")
		}
		// A blocked component JID gets nothing (outbound filter).
		s.OnOutbound(func(ctx context.Context, st *xmlel.Element, from, to jid.JID) bool {
			return to.Localpart() != "blocked"
		})
	})
	if got := e.srv.Components(); len(got) != 1 || got[0] != "echo."+domain {
		t.Fatalf("Components() = %v", got)
	}
	e.addUser("alice", "pw-alice")
	a := e.online("alice", "a")

	// IQ request and its answer.
	res := a.IQ("get", "echo."+domain, "<query xmlns='urn:x'/>")
	if res.Get("type") != "result" || res.Get("from") != "echo."+domain {
		t.Fatalf("IQ answer: %s", res)
	}
	// Message and directed presence to a JID at the component come back.
	a.Send("<message to='room@echo.%s' type='groupchat'><body>hi</body></message>", domain)
	m := a.Expect(xmpptest.IsMessage("hi"))
	if m.Get("from") != "room@echo."+domain || m.Get("to") != a.JID {
		t.Fatalf("echoed message: %s", m)
	}
	a.Send("<presence to='room@echo.%s/nick'/>", domain)
	a.Expect(xmpptest.IsPresenceFrom("room@echo."+domain+"/nick", ""))
	// Blocked by an outbound filter: nothing arrives at the component.
	a.Send("<message to='blocked@echo.%s'><body>no</body></message>", domain)

	// The server asks the client on the component's behalf and gets the answer.
	done := make(chan *xmlel.Element, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := e.srv.RequestFrom(ctx, xmlel.New(server.NSClient, "iq", "type", "get", "from", "room@echo."+domain, "to", a.JID).Add(xmlel.New("urn:xmpp:ping", "ping")))
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	req := a.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "iq" && el.Get("from") == "room@echo."+domain })
	a.Send("<iq type='result' id='%s' to='room@echo.%s'/>", req.Get("id"), domain)
	if r := <-done; r == nil || r.Get("type") != "result" || r.Get("from") != a.JID {
		t.Fatalf("RequestFrom answer: %v", r)
	}
	// Leaving sends unavailable presence to the directed-presence recipient.
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got := comp.received()
		if len(got) > 0 && got[len(got)-1] == "presence unavailable "+a.JID {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []string{"iq get " + a.JID, "message groupchat " + a.JID, "presence  " + a.JID, "presence unavailable " + a.JID}
	got := comp.received()
	if len(got) != len(want) {
		t.Fatalf("component received %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("component received %q, want %q", got, want)
		}
	}
}

func TestComponentUnknownDomain(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	a := e.online("alice", "a")
	r := a.IQ("get", "nothing."+domain, "<query xmlns='urn:x'/>")
	if r.Get("type") != "error" || r.Child("", "error").Child("urn:ietf:params:xml:ns:xmpp-stanzas", "remote-server-not-found") == nil {
		t.Fatalf("IQ to an unknown domain: %s", r)
	}
}
