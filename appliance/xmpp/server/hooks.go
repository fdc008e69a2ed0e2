package server

import (
	"context"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// Message is a message stanza passing through the router (RFC 6121 §5, §8.5).
// Hooks may change Stanza (for example add a XEP-0359 stanza-id); later hooks
// and the delivery see the change.
type Message struct {
	Stanza *xmlel.Element
	// From is the stamped sender; To the addressed JID (never empty: a message
	// without 'to' is addressed to the sender's bare JID, RFC 6120 §10.3.1).
	From, To jid.JID
	// Type is the message type attribute ("" means normal).
	Type string
	// Sender is the local client session that sent the message, or nil.
	Sender *Session
	// Offline is set when the message was stored for later delivery (XEP-0160).
	Offline bool
	// ArchiveID is the stanza-id (XEP-0359) the sender's archive gave an
	// outgoing message (set by the archive's OnMessageOut hook); XEP-0313
	// §3.5 puts it only into the sender's own copies such as sent carbons.
	ArchiveID string
}

// MessageHook inspects or changes a message at one point of the delivery
// path. Returning true stops the message there (the hook has answered or
// dropped it, for example with Server.Bounce).
type MessageHook func(ctx context.Context, m *Message) (stop bool)

// DeliveredHook runs after a message for a local account was handed to
// sessions (delivered, possibly empty) or stored offline (m.Offline).
type DeliveredHook func(ctx context.Context, m *Message, delivered []*Session)

// StanzaFilter decides whether a stanza from 'from' may reach the local
// account 'to' (inbound, for example XEP-0191 blocking). Returning false drops
// it; the filter may answer the sender itself.
type StanzaFilter func(ctx context.Context, st *xmlel.Element, from, to jid.JID) bool

// PresenceHook runs after a session's available presence was broadcast;
// initial is true for its first available presence (RFC 6121 §4.2).
type PresenceHook func(ctx context.Context, sess *Session, presence *xmlel.Element, initial bool)

// PresenceOutHook may change a session's available presence broadcast (no
// 'to') before it is stored and sent, for example to add the XEP-0153
// avatar hash as XEP-0398 §4 asks.
type PresenceOutHook func(ctx context.Context, sess *Session, presence *xmlel.Element)

// SessionHook runs when a session ends (after its unavailable broadcast).
type SessionHook func(ctx context.Context, sess *Session)

type hooks struct {
	messageOut []MessageHook
	messageIn  []MessageHook
	delivered  []DeliveredHook
	inbound    []StanzaFilter
	outbound   []StanzaFilter
	available  []PresenceHook
	presOut    []PresenceOutHook
	closed     []SessionHook
}

// OnMessageOut registers h for messages sent by local client sessions, after
// 'from' is stamped and before routing (XEP-0280 sent carbons, XEP-0313
// archiving of outgoing messages, XEP-0191 outgoing checks). Register before
// the first ListenC2S, like every hook.
func (s *Server) OnMessageOut(h MessageHook) { s.hooks.messageOut = append(s.hooks.messageOut, h) }

// OnMessageIn registers h for messages addressed to an existing local account,
// before delivery to its resources or offline storage (XEP-0313 archiving,
// XEP-0359 stanza-id).
func (s *Server) OnMessageIn(h MessageHook) { s.hooks.messageIn = append(s.hooks.messageIn, h) }

// OnMessageDelivered registers h to run after a message for a local account
// was delivered or stored offline (XEP-0280 received carbons, XEP-0357 push).
func (s *Server) OnMessageDelivered(h DeliveredHook) {
	s.hooks.delivered = append(s.hooks.delivered, h)
}

// OnInbound registers a filter for every stanza about to reach a local account
// or one of its sessions.
func (s *Server) OnInbound(f StanzaFilter) { s.hooks.inbound = append(s.hooks.inbound, f) }

// OnOutbound registers a filter for every stanza a local account sends to
// another entity (from is the local sender, to the recipient).
func (s *Server) OnOutbound(f StanzaFilter) { s.hooks.outbound = append(s.hooks.outbound, f) }

// OnAvailable registers h to run after a session's available presence was
// broadcast (XEP-0163 last-item delivery).
func (s *Server) OnAvailable(h PresenceHook) { s.hooks.available = append(s.hooks.available, h) }

// OnPresenceOut registers h for a session's available presence broadcasts,
// before they are stored and sent.
func (s *Server) OnPresenceOut(h PresenceOutHook) { s.hooks.presOut = append(s.hooks.presOut, h) }

// OnSessionClosed registers h to run when a session has ended.
func (s *Server) OnSessionClosed(h SessionHook) { s.hooks.closed = append(s.hooks.closed, h) }

// allowed runs the outbound filters (when from is local) and the inbound
// filters (when to is a local account) for st.
func (s *Server) allowed(ctx context.Context, st *xmlel.Element, from, to jid.JID) bool {
	if s.IsLocal(from) && from.Localpart() != "" {
		for _, f := range s.hooks.outbound {
			if !f(ctx, st, from, to) {
				return false
			}
		}
	}
	if s.IsLocal(to) && to.Localpart() != "" {
		for _, f := range s.hooks.inbound {
			if !f(ctx, st, from, to) {
				return false
			}
		}
	}
	return true
}

func runMessageHooks(ctx context.Context, hs []MessageHook, m *Message) (stop bool) {
	for _, h := range hs {
		if h(ctx, m) {
			return true
		}
	}
	return false
}

// Bounce answers st with an error stanza to its sender unless st is itself
// an error (RFC 6120 §8.3.1).
func (s *Server) Bounce(ctx context.Context, st *xmlel.Element, se *StanzaError) {
	s.bounce(ctx, st, se)
}

// Route delivers a server- or module-generated stanza whose 'from' and 'to'
// are set, applying the same rules as for a client's stanza (RFC 6121 §8.5),
// to a local account or a component (see AddComponent). Stanzas for other
// domains are dropped until federation exists.
func (s *Server) Route(ctx context.Context, st *xmlel.Element) {
	s.routeStanza(ctx, st)
}

// Presence returns the session's last available presence, or nil when it is
// not available (RFC 6121 §4).
func (sess *Session) Presence() *xmlel.Element {
	sess.srv.router.mu.RLock()
	defer sess.srv.router.mu.RUnlock()
	return sess.presence
}

// Priority returns the session's presence priority (RFC 6121 §4.7.2.3).
func (sess *Session) Priority() int {
	sess.srv.router.mu.RLock()
	defer sess.srv.router.mu.RUnlock()
	return sess.priority
}
