// Package modutil holds the access rules shared by Hearth's feature modules
// (package mod/...): who counts as the owner of an account and who may see an
// account's presence-derived information.
package modutil

import (
	"context"
	"errors"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"mellium.im/xmpp/jid"
)

// LocalUser returns the localpart of the requester when it is an account of
// this server (a local c2s session, RFC 6120 §7), and ok=false otherwise (a
// request from another domain or from a bare domain).
func LocalUser(s *server.Server, iq *server.IQ) (username string, ok bool) {
	if !s.IsLocal(iq.From) || iq.From.Localpart() == "" {
		return "", false
	}
	return iq.From.Localpart(), true
}

// IsOwner reports whether a request handled for an account (server.ToAccount)
// comes from that account itself: either it had no 'to' (RFC 6120 §10.3.3) or
// it was addressed to the requester's own bare JID.
func IsOwner(s *server.Server, iq *server.IQ) bool {
	_, ok := LocalUser(s, iq)
	return ok && iq.To.Equal(iq.From.Bare())
}

// PresenceAuthorized reports whether requester may see presence information
// of the local account owner (a bare JID): requester is the owner, or the
// owner's roster has an item for requester's bare JID with subscription
// 'from' or 'both' (RFC 6121 §2.1.2.5, §4.3). XEP-0012 §3 and XEP-0030 account
// queries use this rule.
func PresenceAuthorized(ctx context.Context, s *server.Server, owner, requester jid.JID) (bool, error) {
	owner = owner.Bare()
	if requester.Bare().Equal(owner) {
		return true, nil
	}
	item, err := s.Store().RosterItem(ctx, owner.Localpart(), requester.Bare().String())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return item.Subscription == "from" || item.Subscription == "both", nil
}
