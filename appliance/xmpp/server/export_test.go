package server

import (
	"context"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// StoreOffline exposes storeOffline to the external tests: the step the
// router takes once it decided that no resource can take a message.
func StoreOffline(s *Server, ctx context.Context, st *xmlel.Element, to jid.JID) bool {
	return s.storeOffline(ctx, st, to)
}
