package pep

import (
	"context"
	"errors"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

const nsDiscoItems = disco.NSItems

// discoItems answers disco#items to an account (XEP-0030 §4.1): without a
// node, the account's PEP nodes the requester may read (XEP-0060 §5.2,
// XEP-0163 §6.2); with a node, that node's items as <item jid name='ItemID'/>
// (XEP-0060 §5.5). Like mod/disco, it answers service-unavailable to a
// requester without a presence subscription who may read nothing, the
// answer for an account that does not exist (RFC 6121 §8.5.1).
func (svc *Service) discoItems(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	owner := iq.To.Localpart()
	authorized, err := modutil.PresenceAuthorized(ctx, svc.s, iq.To, iq.From)
	if err != nil {
		return nil, err
	}
	nodes, err := svc.s.Store().PEPNodes(ctx, owner)
	if err != nil {
		return nil, err
	}
	ownerJID := svc.bare(owner).String()
	want := iq.Payload.Get("node")
	q := xmlel.New(nsDiscoItems, "query")
	q.Set("node", want)
	readable, wanted := 0, false
	for _, n := range nodes {
		cfg, err := unmarshalConfig(n.Config)
		if err != nil {
			return nil, err
		}
		ok, err := svc.mayRead(ctx, owner, cfg, iq.From)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		readable++
		switch {
		case want == "":
			q.Add(xmlel.New(nsDiscoItems, "item", "jid", ownerJID, "node", n.Name))
		case n.Name == want:
			wanted = true
			items, err := svc.s.Store().PEPItems(ctx, owner, n.Name, nil, 0)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			for _, it := range items {
				q.Add(xmlel.New(nsDiscoItems, "item", "jid", ownerJID, "name", it.ID))
			}
		}
	}
	switch {
	case !authorized && readable == 0:
		return nil, server.ErrServiceUnavailable
	case want != "" && !wanted:
		return nil, server.ErrItemNotFound
	}
	return q, nil
}
