// Package carbons implements XEP-0280 Message Carbons: a session that
// enables carbons receives a copy of every instant message its account
// receives on another resource ("received" carbons, XEP-0280 §7) and of
// every one its other resources send ("sent" carbons, §8), so all of a
// user's devices see both sides of every conversation.
//
// # Eligible messages (XEP-0280 §6)
//
// §6 leaves the exact rules to the server, suggesting a set that follows the
// intent "messages used for instant messaging". Hearth copies a message
// when it is
//
//   - of type "chat" (this includes XEP-0085 chat states, see §10.2);
//   - of type "normal" (or no type) with a <body/>;
//   - of type "chat" or "normal" carrying another IM payload: a XEP-0184
//     receipt request or receipt, a XEP-0333 chat marker, or an OMEMO
//     (XEP-0384, legacy and urn:xmpp:omemo:2) encrypted payload;
//
// and never when it is of type "error", "groupchat" or "headline"; carries
// <private xmlns='urn:xmpp:carbons:2'/> (§9) or the XEP-0334 <no-copy/>
// hint; is itself a carbon (has a <received/> or <sent/> child in the
// carbons namespace); or, for received carbons, was sent by a MUC room
// (it has <x xmlns='http://jabber.org/protocol/muc#user'/>, §6: private
// messages from room occupants are replicated by the room itself).
// Error messages are not copied: the correlation §6 would require is not
// kept.
//
// The <private/> element is removed from messages delivered to local
// accounts (§9: "the receiving server SHOULD remove the <private/>
// element").
//
// # Forged carbons
//
// Carbons are wrapped in a message whose 'from' is the account's bare JID
// (§7, §8). A client's own stanzas always carry its full JID (the server
// stamps 'from', RFC 6120 §8.1.2.1), and other entities' carry theirs, so a
// <received/> or <sent/> element in a message from anyone else, including a
// message from one of the user's own resources or contacts that merely
// contains such an element, is delivered as an ordinary message: clients
// MUST accept carbons only from their own bare JID (XEP-0280 §11,
// CVE-2017-5589). The server never copies such messages again.
package carbons

import (
	"context"
	"encoding/xml"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Namespaces.
const (
	// NS is the carbons namespace (XEP-0280 §3): <enable/>, <disable/>,
	// <received/>, <sent/> and <private/>.
	NS = "urn:xmpp:carbons:2"
	// NSForward is the XEP-0297 Stanza Forwarding namespace of <forwarded/>.
	NSForward = "urn:xmpp:forward:0"
	// NSHints is the XEP-0334 Message Processing Hints namespace (<no-copy/>).
	NSHints = "urn:xmpp:hints"
)

// IM payload namespaces that make a message eligible (XEP-0280 §6).
const (
	nsReceipts  = "urn:xmpp:receipts"                   // XEP-0184
	nsMarkers   = "urn:xmpp:chat-markers:0"             // XEP-0333
	nsOMEMO     = "eu.siacs.conversations.axolotl"      // XEP-0384 (legacy)
	nsOMEMO2    = "urn:xmpp:omemo:2"                    // XEP-0384
	nsMUCUser   = "http://jabber.org/protocol/muc#user" // XEP-0045
	nsServer    = "jabber:server"                       // RFC 6120 s2s stanzas
	privateTTL  = time.Minute
	privateScan = 64
)

// Module is the registered carbons service. Its methods are safe for
// concurrent use.
type Module struct {
	s *server.Server

	mu      sync.Mutex
	enabled map[*server.Session]struct{}
	// private remembers messages whose <private/> element was stripped
	// before delivery, until their delivery hook has run.
	private map[*server.Message]time.Time
}

// Register installs XEP-0280 on s and returns the module:
//
//   - IQ set <enable xmlns='urn:xmpp:carbons:2'/> or <disable/> (no 'to', or
//     to the requester's bare JID) turns carbons on or off for the requesting
//     session (§4, §5); repeating either is not an error (§10.1); requests
//     for another account or not from a local session get not-allowed;
//   - after a message for a local account was delivered (or stored
//     offline), each other carbons-enabled resource of the recipient that
//     did not get it receives a <received/> copy (§7);
//   - when a local session sends a message, each other carbons-enabled
//     resource of the sender receives a <sent/> copy (§8), whether or not
//     the sending session enabled carbons; messages to the sender's own
//     account are copied by the received rule only;
//   - the server's disco#info lists urn:xmpp:carbons:2 (§3).
//
// Copies go to available sessions (RFC 6121 §4.2) that enabled carbons,
// including hibernated ones (XEP-0198: queued for resumption). A session's
// setting is forgotten when it ends.
func Register(s *server.Server) *Module {
	m := &Module{
		s:       s,
		enabled: make(map[*server.Session]struct{}),
		private: make(map[*server.Message]time.Time),
	}
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NS, Local: "enable"}, m.toggle(true))
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NS, Local: "disable"}, m.toggle(false))
	s.AddFeature(server.ToServer, NS)
	s.OnMessageOut(m.sent)
	s.OnMessageIn(m.stripPrivate)
	s.OnMessageDelivered(m.received)
	// XEP-0386 §3.2: <enable xmlns='urn:xmpp:carbons:2'/> inside Bind 2.
	s.HandleBind2Inline(NS, func(sess *server.Session, _ *xmlel.Element) *xmlel.Element {
		m.mu.Lock()
		m.enabled[sess] = struct{}{}
		m.mu.Unlock()
		return nil
	})
	s.OnSessionClosed(func(_ context.Context, sess *server.Session) {
		m.mu.Lock()
		delete(m.enabled, sess)
		m.mu.Unlock()
	})
	return m
}

// Enabled reports whether sess has carbons enabled.
func (m *Module) Enabled(sess *server.Session) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.enabled[sess]
	return ok
}

// toggle returns the handler for <enable/> (on) or <disable/> (XEP-0280 §4,
// §5).
func (m *Module) toggle(on bool) server.IQHandler {
	return func(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
		if !modutil.IsOwner(m.s, iq) || iq.Session == nil {
			return nil, server.Errorf(server.ErrNotAllowed, "carbons are enabled by a session for itself")
		}
		m.mu.Lock()
		if on {
			m.enabled[iq.Session] = struct{}{}
		} else {
			delete(m.enabled, iq.Session)
		}
		m.mu.Unlock()
		return nil, nil
	}
}

// sent copies a message a local session sends to its account's other
// carbons-enabled sessions (XEP-0280 §8).
func (m *Module) sent(_ context.Context, msg *server.Message) bool {
	if msg.Sender == nil || msg.To.Bare().Equal(msg.From.Bare()) || !eligible(msg.Stanza, msg.Type, false) {
		return false
	}
	m.copyTo(msg.Sender.Username(), msg, "sent", func(sess *server.Session) bool { return sess == msg.Sender })
	return false
}

// stripPrivate removes <private/> from a message about to be delivered to
// a local account (XEP-0280 §9) and remembers that it had one.
func (m *Module) stripPrivate(_ context.Context, msg *server.Message) bool {
	if msg.Stanza.Child(NS, "private") == nil {
		return false
	}
	// In place: the delivery holds on to the stanza it had before the hooks.
	msg.Stanza.RemoveChildren(func(e *xmlel.Element) bool { return e.Name.Space == NS && e.Name.Local == "private" })
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.private) >= privateScan {
		// Entries whose delivery hook never ran (bounced messages).
		for k, t := range m.private {
			if now.Sub(t) > privateTTL {
				delete(m.private, k)
			}
		}
	}
	m.private[msg] = now
	return false
}

// received copies a delivered message to the recipient's carbons-enabled
// sessions that did not get it (XEP-0280 §7).
func (m *Module) received(_ context.Context, msg *server.Message, delivered []*server.Session) {
	m.mu.Lock()
	_, private := m.private[msg]
	delete(m.private, msg)
	m.mu.Unlock()
	if private || !eligible(msg.Stanza, msg.Type, true) {
		return
	}
	m.copyTo(msg.To.Localpart(), msg, "received", func(sess *server.Session) bool {
		for _, d := range delivered {
			if d == sess {
				return true
			}
		}
		return false
	})
}

// copyTo sends msg wrapped in <dir><forwarded/></dir> (XEP-0280 §7, §8) to
// each carbons-enabled session of user that exclude rejects.
func (m *Module) copyTo(user string, msg *server.Message, dir string, exclude func(*server.Session) bool) {
	var bare string
	for _, sess := range m.s.Sessions(user) {
		if exclude(sess) || !m.Enabled(sess) || !sess.Available() {
			continue
		}
		if bare == "" {
			bare = sess.JID().Bare().String()
		}
		c := xmlel.New(server.NSClient, "message", "from", bare, "to", sess.JID().String())
		c.Set("type", msg.Stanza.Get("type"))
		fwd := msg.Stanza
		if dir == "sent" && msg.ArchiveID != "" {
			// XEP-0313 §3.5: the sender's archive id goes into the sender's
			// own copies only.
			fwd = fwd.ShallowCopy()
			fwd.Add(xmlel.New("urn:xmpp:sid:0", "stanza-id", "id", msg.ArchiveID, "by", bare))
		}
		c.Add(xmlel.New(NS, dir).Add(xmlel.New(NSForward, "forwarded").Add(fwd)))
		sess.Send(c)
	}
}

// eligible applies the XEP-0280 §6 rules (see the package documentation);
// received selects the rules for inbound messages.
func eligible(st *xmlel.Element, typ string, received bool) bool {
	switch typ {
	case "chat", "normal", "":
	default: // error, groupchat, headline
		return false
	}
	im := typ == "chat"
	for _, c := range st.Elements() {
		switch c.Name.Space {
		case NS:
			switch c.Name.Local {
			case "private", "received", "sent":
				return false
			}
		case NSHints:
			if c.Name.Local == "no-copy" {
				return false
			}
		case nsMUCUser:
			if received {
				return false
			}
		case server.NSClient, nsServer, "":
			if c.Name.Local == "body" {
				im = true
			}
		case nsReceipts, nsMarkers, nsOMEMO, nsOMEMO2:
			im = true
		}
	}
	return im
}
