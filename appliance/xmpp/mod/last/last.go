// Package last implements XEP-0012 Last Activity: the server's uptime, and for
// an account, how long ago its user logged out and with which status.
package last

import (
	"context"
	"encoding/xml"
	"strconv"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// NS is the XEP-0012 namespace (XEP-0012 §2).
const NS = "jabber:iq:last"

// Register answers last activity requests: to the server with its uptime in
// seconds since s.Started() (XEP-0012 §5), and to an account's bare JID (or
// with no 'to', for the requester's own account) on the user's behalf
// (XEP-0012 §3). It advertises jabber:iq:last in the server's disco#info
// (XEP-0012 §6).
func Register(s *server.Server) {
	name := xml.Name{Space: NS, Local: "query"}
	h := &handler{s: s}
	s.HandleIQ(server.ToServer, "get", name, h.uptime)
	s.HandleIQ(server.ToAccount, "get", name, h.account)
	s.AddFeature(server.ToServer, NS)
}

type handler struct{ s *server.Server }

// uptime answers a query to the server with the seconds since it started
// and no text (XEP-0012 §5).
func (h *handler) uptime(context.Context, *server.IQ) (*xmlel.Element, error) {
	return query(h.s.Now().Sub(h.s.Started()), ""), nil
}

// account answers a query to a user's bare JID (XEP-0012 §3): forbidden
// unless the requester may see the user's presence (the user, or a contact
// with a 'from' or 'both' subscription, XEP-0012 §8); 0 seconds while the user
// has an available resource; otherwise the seconds since the last logout and
// the status text of the last unavailable presence. An account that never
// logged out has no last activity: item-not-found.
func (h *handler) account(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	ok, err := modutil.PresenceAuthorized(ctx, h.s, iq.To, iq.From)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, server.Errorf(server.ErrForbidden, "you are not subscribed to this user's presence")
	}
	user := iq.To.Localpart()
	for _, sess := range h.s.Sessions(user) {
		if sess.Available() {
			return query(0, ""), nil
		}
	}
	accts, err := h.s.Store().Accounts(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range accts {
		if a.Username != user {
			continue
		}
		if a.LastLogout.IsZero() {
			return nil, server.Errorf(server.ErrItemNotFound, "no last activity recorded")
		}
		return query(h.s.Now().Sub(a.LastLogout), a.LastStatus), nil
	}
	// Deleted since the router checked it: as for any unknown account
	// (RFC 6121 §8.5.1).
	return nil, server.ErrServiceUnavailable
}

// query builds <query xmlns='jabber:iq:last' seconds='…'>text</query>
// (XEP-0012 §2); a negative duration (clock step) counts as 0.
func query(d time.Duration, text string) *xmlel.Element {
	secs := int64(d / time.Second)
	if secs < 0 {
		secs = 0
	}
	return xmlel.New(NS, "query", "seconds", strconv.FormatInt(secs, 10)).AddText(text)
}
