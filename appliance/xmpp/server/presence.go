package server

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// routePresenceFromClient handles a presence stanza from a local session:
// availability broadcasts (RFC 6121 §4.2-§4.5), directed presence (§4.6) and
// subscription management (§3).
func (s *Server) routePresenceFromClient(ctx context.Context, sess *Session, st *xmlel.Element, to jid.JID) {
	typ := st.Get("type")
	switch typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		if to.String() == "" || to.Domainpart() == "" {
			sess.Send(ErrorReply(st, Errorf(ErrBadRequest, "subscription requests need a 'to' address")))
			return
		}
		// RFC 6121 §3.1.2: stamp the bare JID and address the contact's bare JID.
		contact := to.Bare()
		st.Set("from", sess.bare.String())
		st.Set("to", contact.String())
		s.outboundSubscription(ctx, sess.username, st, typ, contact)
	case "", "unavailable":
		if to.String() == "" {
			s.broadcastPresence(ctx, sess, st)
			return
		}
		s.directedPresence(ctx, sess, st, to)
	case "error":
		if to.String() != "" {
			s.deliverPresence(ctx, st, to)
		}
	case "probe":
		// RFC 6121 §4.3: probes are the server's business; a client's is ignored.
	default:
		sess.Send(ErrorReply(st, Errorf(ErrBadRequest, "unknown presence type")))
	}
}

// parsePriority reads <priority/> (RFC 6121 §4.7.2.3): an integer from -128
// to 127, 0 when absent or invalid.
func parsePriority(st *xmlel.Element) int {
	p, err := strconv.Atoi(strings.TrimSpace(st.ChildText("", "priority")))
	if err != nil || p < -128 || p > 127 {
		return 0
	}
	return p
}

// broadcastPresence handles presence without 'to' (RFC 6121 §4.2, §4.4, §4.5).
func (s *Server) broadcastPresence(ctx context.Context, sess *Session, st *xmlel.Element) {
	available := st.Get("type") == ""
	if available {
		for _, h := range s.hooks.presOut {
			h(ctx, sess, st)
		}
	}
	s.router.mu.Lock()
	wasAvailable := sess.available
	prevPriority := sess.priority
	var directed map[string]string
	if available {
		sess.available = true
		sess.priority = parsePriority(st)
		sess.presence = st
	} else {
		if !wasAvailable {
			s.router.mu.Unlock()
			return
		}
		sess.available = false
		sess.presence = nil
		sess.lastStatus = st.ChildText("", "status")
		directed = sess.directed
		sess.directed = nil
	}
	priority := sess.priority
	s.router.mu.Unlock()

	items, _, err := s.store.Roster(ctx, sess.username)
	if err != nil {
		s.log.Error("roster read failed", "err", err)
		return
	}
	// To contacts subscribed to the user's presence.
	for _, it := range items {
		if it.Subscription == "from" || it.Subscription == "both" {
			delete(directed, it.JID)
			s.sendPresenceTo(ctx, st, it.JID)
		}
	}
	// To the user's own available resources, including the sender for an
	// available presence (RFC 6121 §4.2.2).
	for _, other := range s.router.sessions(sess.username) {
		if other == sess && !available {
			continue
		}
		if other.Available() {
			c := st.ShallowCopy()
			c.Set("to", other.jid.String())
			other.Send(c)
		}
	}
	// Unavailable also goes to directed-presence recipients (RFC 6121 §4.6.3).
	for j := range directed {
		s.sendPresenceTo(ctx, st, j)
	}
	if !available {
		return
	}
	if !wasAvailable {
		// Initial presence (RFC 6121 §4.2): probe the contacts we subscribe to
		// and hand over pending subscription requests (§3.1.3).
		for _, it := range items {
			if it.Subscription == "to" || it.Subscription == "both" {
				s.probe(ctx, sess, it.JID)
			}
		}
		s.redeliverSubscriptionRequests(ctx, sess)
	}
	if priority >= 0 && (!wasAvailable || prevPriority < 0) {
		s.deliverOffline(ctx, sess)
	}
	for _, h := range s.hooks.available {
		h(ctx, sess, st, !wasAvailable)
	}
}

// sendPresenceTo sends a copy of st addressed to the JID string to.
func (s *Server) sendPresenceTo(ctx context.Context, st *xmlel.Element, to string) {
	j, err := jid.Parse(to)
	if err != nil {
		return
	}
	c := st.ShallowCopy()
	c.Set("to", j.String())
	s.deliverPresence(ctx, c, j)
}

// probe answers, on behalf of the local contact, a presence probe from sess
// (RFC 6121 §4.3.2): the contact's current presence from each available
// resource, if the contact has approved the subscription.
func (s *Server) probe(ctx context.Context, sess *Session, contact string) {
	cj, err := jid.Parse(contact)
	if err != nil || !s.IsLocal(cj) || cj.Localpart() == "" {
		return // remote contacts are probed over s2s
	}
	item, err := s.store.RosterItem(ctx, cj.Localpart(), sess.bare.String())
	if err != nil || (item.Subscription != "from" && item.Subscription != "both") {
		return
	}
	for _, cs := range s.router.sessions(cj.Localpart()) {
		s.router.mu.RLock()
		p := cs.presence
		s.router.mu.RUnlock()
		if p != nil && s.allowed(ctx, p, cs.jid, sess.jid) {
			c := p.ShallowCopy()
			c.Set("to", sess.jid.String())
			sess.Send(c)
		}
	}
}

// directedPresence sends presence to one entity (RFC 6121 §4.6) and remembers
// the recipient so it hears of the user going offline.
func (s *Server) directedPresence(ctx context.Context, sess *Session, st *xmlel.Element, to jid.JID) {
	available := st.Get("type") == ""
	s.router.mu.Lock()
	if sess.available && available {
		if sess.directed == nil {
			sess.directed = make(map[string]string)
		}
		sess.directed[to.String()] = ""
	} else if !available {
		delete(sess.directed, to.String())
	}
	s.router.mu.Unlock()
	s.deliverPresence(ctx, st, to)
}

// deliverPresence delivers an availability or error presence to a local JID
// (RFC 6121 §8.5.2.1.2 and §8.5.3): a full JID gets it if that resource is
// bound, a bare JID on every available resource. Presence to unknown accounts
// or other domains is dropped silently (RFC 6121 §8.5.1).
func (s *Server) deliverPresence(ctx context.Context, st *xmlel.Element, to jid.JID) {
	if !s.IsLocal(to) {
		if from, err := jid.Parse(st.Get("from")); err == nil {
			s.toComponent(ctx, st, from, to)
		}
		return
	}
	if to.Localpart() == "" {
		return
	}
	if from, err := jid.Parse(st.Get("from")); err == nil && !s.allowed(ctx, st, from, to) {
		return
	}
	if to.Resourcepart() != "" {
		if sess := s.router.session(to); sess != nil {
			sess.Send(st)
		}
		return
	}
	for _, sess := range s.router.sessions(to.Localpart()) {
		if sess.Available() {
			sess.Send(st)
		}
	}
}

// sendAvailableTo sends the user's current presence from each available
// resource to a contact (RFC 6121 §3.1.5, after approving a subscription).
func (s *Server) sendAvailableTo(ctx context.Context, user string, contact jid.JID) {
	for _, sess := range s.router.sessions(user) {
		s.router.mu.RLock()
		p := sess.presence
		s.router.mu.RUnlock()
		if p != nil {
			c := p.ShallowCopy()
			c.Set("to", contact.String())
			s.deliverPresence(ctx, c, contact)
		}
	}
}

// sendUnavailableTo tells a contact that each of the user's available
// resources is gone (RFC 6121 §3.2.2, after cancelling a subscription).
func (s *Server) sendUnavailableTo(ctx context.Context, user string, contact jid.JID) {
	for _, sess := range s.router.sessions(user) {
		if sess.Available() {
			p := xmlel.New(NSClient, "presence", "type", "unavailable", "from", sess.jid.String(), "to", contact.String())
			s.deliverPresence(ctx, p, contact)
		}
	}
}

// sendSubscription routes a server-generated subscription stanza.
func (s *Server) sendSubscription(ctx context.Context, from, to jid.JID, typ string) {
	st := xmlel.New(NSClient, "presence", "type", typ, "from", from.String(), "to", to.String())
	if s.IsLocal(to) && to.Localpart() != "" {
		s.inboundSubscription(ctx, to.Localpart(), st, typ, from)
	}
}

// outboundSubscription applies the user's side of a subscription stanza the
// user sent (RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2, §3.4) and routes it.
func (s *Server) outboundSubscription(ctx context.Context, user string, st *xmlel.Element, typ string, contact jid.JID) {
	userBare := jid.MustParse(st.Get("from"))
	item, err := s.store.RosterItem(ctx, user, contact.String())
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("roster read failed", "err", err)
		return
	}
	if !found {
		item = store.RosterItem{JID: contact.String(), Subscription: "none"}
	}
	route := true
	switch typ {
	case "subscribe":
		if item.Subscription != "to" && item.Subscription != "both" && !item.Ask {
			item.Ask = true
			s.mustPut(ctx, user, item)
		}
	case "subscribed":
		pending := s.hasPendingRequest(ctx, user, contact)
		switch {
		case item.Subscription == "from" || item.Subscription == "both":
			route = false
		case pending:
			item.Subscription = map[string]string{"none": "from", "to": "both"}[item.Subscription]
			item.Approved = false
			s.mustPut(ctx, user, item)
			s.store.DeleteSubscriptionRequest(ctx, user, contact.String())
			defer s.sendAvailableTo(ctx, user, contact)
		default:
			// Pre-approval (RFC 6121 §3.4): remembered, not routed.
			route = false
			if !item.Approved {
				item.Approved = true
				s.mustPut(ctx, user, item)
			}
		}
	case "unsubscribe":
		if found && (item.Subscription == "to" || item.Subscription == "both" || item.Ask) {
			item.Subscription = map[string]string{"to": "none", "both": "from", "none": "none", "from": "from"}[item.Subscription]
			item.Ask = false
			s.mustPut(ctx, user, item)
		}
	case "unsubscribed":
		pending := s.hasPendingRequest(ctx, user, contact)
		if pending {
			s.store.DeleteSubscriptionRequest(ctx, user, contact.String())
		}
		switch {
		case found && (item.Subscription == "from" || item.Subscription == "both"):
			s.sendUnavailableTo(ctx, user, contact)
			item.Subscription = map[string]string{"from": "none", "both": "to"}[item.Subscription]
			item.Approved = false
			s.mustPut(ctx, user, item)
		case found && item.Approved:
			item.Approved = false
			s.mustPut(ctx, user, item)
			route = pending
		default:
			route = pending
		}
	}
	if !route {
		return
	}
	if !s.IsLocal(contact) {
		return // s2s routing comes with federation
	}
	if contact.Localpart() != "" {
		s.inboundSubscription(ctx, contact.Localpart(), st, typ, userBare)
	}
}

// inboundSubscription applies a subscription stanza arriving for the local
// account contact from the bare JID from (RFC 6121 §3.1.3, §3.1.6, §3.2.3,
// §3.3.3).
func (s *Server) inboundSubscription(ctx context.Context, contact string, st *xmlel.Element, typ string, from jid.JID) {
	contactBare, err := jid.New(contact, s.domain.Domainpart(), "")
	if err != nil {
		return
	}
	if !s.allowed(ctx, st, from, contactBare) {
		return
	}
	exists, err := s.store.AccountExists(ctx, contact)
	if err != nil || !exists {
		if err == nil && typ == "subscribe" {
			// RFC 6121 §3.1.3: no such contact; answer unsubscribed.
			s.sendSubscription(ctx, contactBare, from, "unsubscribed")
		}
		return
	}
	item, err := s.store.RosterItem(ctx, contact, from.String())
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("roster read failed", "err", err)
		return
	}
	switch typ {
	case "subscribe":
		switch {
		case found && (item.Subscription == "from" || item.Subscription == "both"):
			s.sendSubscription(ctx, contactBare, from, "subscribed")
		case found && item.Approved:
			item.Subscription = map[string]string{"none": "from", "to": "both"}[item.Subscription]
			item.Approved = false
			s.mustPut(ctx, contact, item)
			s.sendSubscription(ctx, contactBare, from, "subscribed")
			s.sendAvailableTo(ctx, contact, from)
		default:
			stored := st.ShallowCopy()
			stored.Name.Space = NSClient
			if err := s.store.AddSubscriptionRequest(ctx, contact, from.String(), []byte(stored.String())); err != nil {
				s.log.Error("storing subscription request failed", "err", err)
				return
			}
			s.deliverPresence(ctx, st, contactBare)
		}
	case "subscribed":
		if found && item.Ask && (item.Subscription == "none" || item.Subscription == "from") {
			item.Subscription = map[string]string{"none": "to", "from": "both"}[item.Subscription]
			item.Ask = false
			s.mustPut(ctx, contact, item)
			s.deliverPresence(ctx, st, contactBare)
		}
	case "unsubscribe":
		s.store.DeleteSubscriptionRequest(ctx, contact, from.String())
		if found && (item.Subscription == "from" || item.Subscription == "both") {
			item.Subscription = map[string]string{"from": "none", "both": "to"}[item.Subscription]
			s.mustPut(ctx, contact, item)
			s.deliverPresence(ctx, st, contactBare)
			s.sendUnavailableTo(ctx, contact, from)
		}
	case "unsubscribed":
		if found && (item.Subscription == "to" || item.Subscription == "both" || item.Ask) {
			item.Subscription = map[string]string{"to": "none", "both": "from", "none": "none", "from": "from"}[item.Subscription]
			item.Ask = false
			s.mustPut(ctx, contact, item)
			s.deliverPresence(ctx, st, contactBare)
		}
	}
}

// mustPut stores and pushes a roster item, logging failures (the stanza that
// caused the change has no one to report them to).
func (s *Server) mustPut(ctx context.Context, user string, item store.RosterItem) {
	if err := s.putRosterItem(ctx, user, item); err != nil {
		s.log.Error("roster update failed", "user", user, "contact", item.JID, "err", err)
	}
}

func (s *Server) hasPendingRequest(ctx context.Context, user string, contact jid.JID) bool {
	reqs, err := s.store.SubscriptionRequests(ctx, user)
	if err != nil {
		return false
	}
	for _, r := range reqs {
		if r.Contact == contact.String() {
			return true
		}
	}
	return false
}

// redeliverSubscriptionRequests hands stored inbound subscription requests to
// a newly available session (RFC 6121 §3.1.3).
func (s *Server) redeliverSubscriptionRequests(ctx context.Context, sess *Session) {
	reqs, err := s.store.SubscriptionRequests(ctx, sess.username)
	if err != nil {
		s.log.Error("reading subscription requests failed", "err", err)
		return
	}
	for _, r := range reqs {
		el, err := xmlel.Parse(string(r.Stanza))
		if err != nil {
			continue
		}
		el.Set("to", sess.bare.String())
		if from, err := jid.Parse(el.Get("from")); err == nil && !s.allowed(ctx, el, from, sess.bare) {
			continue // blocked since it was stored
		}
		sess.Send(el)
	}
}

// teardown runs when a session's stream has ended: it unregisters the
// session, tells contacts and directed-presence recipients it is gone, and
// records last activity (XEP-0012) when it was the account's last session.
func (s *Server) teardown(ctx context.Context, sess *Session) {
	wasBound := s.router.unbind(sess)
	s.router.mu.RLock()
	available := sess.available
	s.router.mu.RUnlock()
	if available {
		replacedAvailable := false
		if !wasBound {
			if n := s.router.session(sess.jid); n != nil && n.Available() {
				replacedAvailable = true
			}
		}
		if !replacedAvailable {
			s.broadcastPresence(ctx, sess, xmlel.New(NSClient, "presence", "type", "unavailable", "from", sess.jid.String()))
		}
	}
	if len(s.router.sessions(sess.username)) == 0 {
		s.router.mu.RLock()
		status := sess.lastStatus
		s.router.mu.RUnlock()
		if err := s.store.SetLastActivity(ctx, sess.username, s.now(), status); err != nil {
			s.log.Warn("recording last activity failed", "err", err)
		}
	}
	for _, h := range s.hooks.closed {
		h(ctx, sess)
	}
	sess.log.Info("session closed")
}
