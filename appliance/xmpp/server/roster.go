package server

import (
	"context"
	"encoding/xml"
	"errors"
	"unicode/utf8"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// maxRosterText bounds roster item names and group names, in bytes.
const maxRosterText = 1023

// registerCore installs the handlers the core itself implements.
func (s *Server) registerCore() {
	roster := xml.Name{Space: NSRoster, Local: "query"}
	s.HandleIQ(ToAccount, "get", roster, s.rosterGet)
	s.HandleIQ(ToAccount, "set", roster, s.rosterSet)
	// RFC 3921 §3 session establishment is a no-op kept for old clients
	// (RFC 6121 Appendix E).
	s.HandleIQ(ToAccount, "set", xml.Name{Space: NSSession, Local: "session"},
		func(ctx context.Context, iq *IQ) (*xmlel.Element, error) { return nil, nil })
	s.AddIdentity(ToServer, "server", "im", "Hearth")
	s.AddIdentity(ToAccount, "account", "registered", "")
}

// rosterGet answers a roster get (RFC 6121 §2.1.3) with versioning
// (XEP-0237 §3): an empty result when the client's version is current.
func (s *Server) rosterGet(ctx context.Context, iq *IQ) (*xmlel.Element, error) {
	if !iq.To.Equal(iq.From.Bare()) {
		return nil, ErrForbidden
	}
	items, ver, err := s.store.Roster(ctx, iq.From.Localpart())
	if err != nil {
		return nil, err
	}
	if iq.Session != nil {
		s.router.mu.Lock()
		iq.Session.interested = true
		s.router.mu.Unlock()
	}
	if iq.Payload.Has("ver") && iq.Payload.Get("ver") == itoa(ver) {
		return nil, nil
	}
	q := xmlel.New(NSRoster, "query", "ver", itoa(ver))
	for _, it := range items {
		q.Add(rosterItemElement(it))
	}
	return q, nil
}

// rosterSet handles a roster set from the user (RFC 6121 §2.3 and §2.5).
func (s *Server) rosterSet(ctx context.Context, iq *IQ) (*xmlel.Element, error) {
	if !iq.To.Equal(iq.From.Bare()) {
		return nil, ErrForbidden
	}
	items := iq.Payload.ChildrenNamed(NSRoster, "item")
	if len(items) != 1 || len(iq.Payload.Elements()) != 1 {
		return nil, Errorf(ErrBadRequest, "a roster set carries exactly one item (RFC 6121 §2.3.3)")
	}
	el := items[0]
	contact, err := jid.Parse(el.Get("jid"))
	if err != nil || contact.Domainpart() == "" {
		return nil, Errorf(ErrJIDMalformed, "invalid roster item JID")
	}
	contact = contact.Bare()
	user := iq.From.Localpart()
	if contact.Equal(iq.From.Bare()) {
		return nil, Errorf(ErrNotAllowed, "you cannot add yourself to your roster")
	}
	if el.Get("subscription") == "remove" {
		return nil, s.rosterRemove(ctx, user, iq.From.Bare(), contact)
	}
	name := el.Get("name")
	if len(name) > maxRosterText || !utf8.ValidString(name) {
		return nil, Errorf(ErrNotAcceptable, "roster item name too long")
	}
	var groups []string
	seen := map[string]bool{}
	for _, g := range el.ChildrenNamed(NSRoster, "group") {
		gn := g.Text()
		switch {
		case gn == "" || len(gn) > maxRosterText:
			return nil, Errorf(ErrNotAcceptable, "empty or too long group name (RFC 6121 §2.3.3)")
		case seen[gn]:
			return nil, Errorf(ErrBadRequest, "duplicate group (RFC 6121 §2.3.3)")
		}
		seen[gn] = true
		groups = append(groups, gn)
	}
	item, err := s.store.RosterItem(ctx, user, contact.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		items, _, err := s.store.Roster(ctx, user)
		if err != nil {
			return nil, err
		}
		if len(items) >= s.limits.MaxRosterItems {
			return nil, Errorf(ErrNotAllowed, "roster is full")
		}
		item = store.RosterItem{JID: contact.String(), Subscription: "none"}
	case err != nil:
		return nil, err
	}
	// RFC 6121 §2.1.2.5: the client cannot set subscription or ask.
	item.Name = name
	item.Groups = groups
	if err := s.putRosterItem(ctx, user, item); err != nil {
		return nil, err
	}
	return nil, nil
}

// rosterRemove deletes a roster item, cancelling subscriptions both ways
// (RFC 6121 §2.5.2).
func (s *Server) rosterRemove(ctx context.Context, user string, userBare, contact jid.JID) error {
	item, err := s.store.RosterItem(ctx, user, contact.String())
	if errors.Is(err, store.ErrNotFound) {
		return ErrItemNotFound
	}
	if err != nil {
		return err
	}
	if item.Subscription == "to" || item.Subscription == "both" || item.Ask {
		s.sendSubscription(ctx, userBare, contact, "unsubscribe")
	}
	if item.Subscription == "from" || item.Subscription == "both" {
		s.sendUnavailableTo(ctx, user, contact)
		s.sendSubscription(ctx, userBare, contact, "unsubscribed")
	}
	if err := s.store.DeleteSubscriptionRequest(ctx, user, contact.String()); err != nil {
		return err
	}
	ver, err := s.store.DeleteRosterItem(ctx, user, contact.String())
	if err != nil {
		return err
	}
	item.Subscription = "remove"
	s.rosterPush(user, item, ver)
	return nil
}

// putRosterItem stores an item and pushes it to the user's interested
// resources (RFC 6121 §2.1.6).
func (s *Server) putRosterItem(ctx context.Context, user string, item store.RosterItem) error {
	ver, err := s.store.PutRosterItem(ctx, user, item)
	if err != nil {
		return err
	}
	s.rosterPush(user, item, ver)
	return nil
}

// rosterPush sends a roster push to every resource of user that requested
// the roster (RFC 6121 §2.1.6).
func (s *Server) rosterPush(user string, item store.RosterItem, ver int64) {
	for _, sess := range s.router.sessions(user) {
		s.router.mu.RLock()
		interested := sess.interested
		s.router.mu.RUnlock()
		if !interested {
			continue
		}
		push := xmlel.New(NSClient, "iq", "type", "set", "id", "push-"+randomID(6), "to", sess.jid.String())
		push.Add(xmlel.New(NSRoster, "query", "ver", itoa(ver)).Add(rosterItemElement(item)))
		sess.Send(push)
	}
}

// rosterItemElement renders a roster item (RFC 6121 §2.1.2).
func rosterItemElement(it store.RosterItem) *xmlel.Element {
	el := xmlel.New(NSRoster, "item", "jid", it.JID, "subscription", it.Subscription)
	if it.Name != "" {
		el.Set("name", it.Name)
	}
	if it.Subscription != "remove" {
		if it.Ask {
			el.Set("ask", "subscribe")
		}
		if it.Approved {
			el.Set("approved", "true")
		}
		for _, g := range it.Groups {
			el.Add(xmlel.New(NSRoster, "group").AddText(g))
		}
	}
	return el
}
