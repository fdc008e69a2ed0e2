package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hearthxmpp/hearth/appliance/store"
	"mellium.im/xmpp/jid"
)

// AddRosterItemMutual subscribes the local accounts a and b (normalised
// localparts) to each other's presence without a subscription handshake, as
// an invitation (XEP-0379 §3, XEP-0401) or a shared circle grants: each gets
// a roster item for the other's bare JID with subscription 'both' (RFC 6121
// §2.1.2.5), keeping an existing item's name and groups and adding group
// (unless empty, too long or already there). Pending subscription requests
// between the two are dropped. Each change is pushed to the owner's
// interested resources (RFC 6121 §2.1.6), and each one's current presence is
// sent to the other's available resources (RFC 6121 §3.1.5). Nothing changes
// for a pair that is already mutually subscribed with that group.
//
// Errors: a plain error for a == b; an error matching store.ErrNotFound if
// either account does not exist; other store errors.
func (s *Server) AddRosterItemMutual(ctx context.Context, a, b, group string) error {
	if a == b {
		return errors.New("server: an account cannot subscribe to itself")
	}
	domain := s.domain.Domainpart()
	aj, err := jid.New(a, domain, "")
	if err != nil {
		return fmt.Errorf("server: invalid username %q: %w", a, err)
	}
	bj, err := jid.New(b, domain, "")
	if err != nil {
		return fmt.Errorf("server: invalid username %q: %w", b, err)
	}
	for _, u := range []string{a, b} {
		ok, err := s.store.AccountExists(ctx, u)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: account %q", store.ErrNotFound, u)
		}
	}
	changedA, err := s.mutualItem(ctx, a, bj, group)
	if err != nil {
		return err
	}
	changedB, err := s.mutualItem(ctx, b, aj, group)
	if err != nil {
		return err
	}
	if changedA || changedB {
		s.sendAvailableTo(ctx, a, bj)
		s.sendAvailableTo(ctx, b, aj)
	}
	return nil
}

// mutualItem makes user's item for contact a 'both' subscription with group
// and reports whether the subscription state changed.
func (s *Server) mutualItem(ctx context.Context, user string, contact jid.JID, group string) (bool, error) {
	item, err := s.store.RosterItem(ctx, user, contact.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		item = store.RosterItem{JID: contact.String()}
	case err != nil:
		return false, err
	}
	wasBoth := item.Subscription == "both"
	addGroup := group != "" && len(group) <= maxRosterText && !slices.Contains(item.Groups, group)
	if err := s.store.DeleteSubscriptionRequest(ctx, user, contact.String()); err != nil {
		return false, err
	}
	if wasBoth && !item.Ask && !addGroup {
		return false, nil
	}
	item.Subscription = "both"
	item.Ask = false
	item.Approved = false
	if addGroup {
		item.Groups = append(item.Groups, group)
	}
	return !wasBoth, s.putRosterItem(ctx, user, item)
}
