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

func TestHooks(t *testing.T) {
	var mu sync.Mutex
	var delivered []string
	var offline int
	var closed []string
	e := newEnv(t, server.Limits{}, func(s *server.Server) {
		s.OnMessageOut(func(ctx context.Context, m *server.Message) bool {
			if m.Sender == nil {
				t.Error("outgoing message without sender session")
			}
			return m.Stanza.ChildText("", "body") == "swallow"
		})
		s.OnMessageIn(func(ctx context.Context, m *server.Message) bool {
			m.Stanza.Add(xmlel.New("urn:xmpp:sid:0", "stanza-id", "id", "x1", "by", m.To.Bare().String()))
			return false
		})
		s.OnMessageDelivered(func(ctx context.Context, m *server.Message, to []*server.Session) {
			mu.Lock()
			defer mu.Unlock()
			if m.Offline {
				offline++
			}
			for _, sess := range to {
				delivered = append(delivered, sess.JID().String())
			}
		})
		s.OnInbound(func(ctx context.Context, st *xmlel.Element, from, to jid.JID) bool {
			return st.ChildText("", "body") != "blocked"
		})
		s.OnSessionClosed(func(ctx context.Context, sess *server.Session) {
			mu.Lock()
			closed = append(closed, sess.JID().String())
			mu.Unlock()
		})
	})
	e.addUser("alice", "pw-alice")
	e.addUser("bob", "pw-bob")
	e.addUser("carol", "pw-carol")
	a := e.online("alice", "a")
	b := e.online("bob", "b")
	a.Send("<message to='bob@%s' type='chat'><body>swallow</body></message>", domain)
	a.Send("<message to='bob@%s' type='chat'><body>blocked</body></message>", domain)
	a.Send("<message to='bob@%s' type='chat'><body>hi</body></message>", domain)
	m := b.Expect(xmpptest.IsMessage("hi"))
	if m.Child("urn:xmpp:sid:0", "stanza-id") == nil {
		t.Fatalf("OnMessageIn change lost: %s", m)
	}
	b.ExpectNone(100*time.Millisecond, func(el *xmlel.Element) bool { return el.Name.Local == "message" })
	a.Send("<message to='carol@%s' type='chat'><body>later</body></message>", domain)
	a.IQ("get", domain, "<query xmlns='jabber:iq:version'/>")
	b.Close()
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != 1 || delivered[0] != b.JID || offline != 1 {
		t.Fatalf("delivered %v offline %d", delivered, offline)
	}
	if len(closed) != 1 || closed[0] != b.JID {
		t.Fatalf("closed %v", closed)
	}
}

func TestServerRequest(t *testing.T) {
	e := newEnv(t, server.Limits{})
	e.addUser("alice", "pw-alice")
	a := e.online("alice", "a")
	done := make(chan *xmlel.Element, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := e.srv.Request(ctx, xmlel.New(server.NSClient, "iq", "type", "get", "to", a.JID).Add(xmlel.New("http://jabber.org/protocol/disco#info", "query")))
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	req := a.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "iq" && el.Get("from") == domain })
	a.Send("<iq type='result' id='%s' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:x'/></query></iq>", req.Get("id"), domain)
	r := <-done
	if r == nil || r.Get("type") != "result" || r.Get("from") != a.JID {
		t.Fatalf("answer: %v", r)
	}
}
