// Package ping implements XEP-0199 XMPP Ping for the server: clients ping the
// domain (or send a ping with no 'to') to check that the stream is alive.
package ping

import (
	"context"
	"encoding/xml"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// NS is the XEP-0199 namespace (XEP-0199 §3).
const NS = "urn:xmpp:ping"

// Register answers pings addressed to the server (XEP-0199 §4.2) and pings
// with no 'to' or to the requester's own bare JID, which the server answers on
// the account's behalf; the server is advertised as supporting ping in
// disco#info (XEP-0199 §5). A ping to another account's bare JID gets
// service-unavailable, exactly like a ping to an account that does not exist
// (RFC 6121 §8.5.1), so that pings cannot be used to discover accounts.
func Register(s *server.Server) {
	name := xml.Name{Space: NS, Local: "ping"}
	h := &handler{s: s}
	s.HandleIQ(server.ToServer, "get", name, h.toServer)
	s.HandleIQ(server.ToAccount, "get", name, h.account)
	s.AddFeature(server.ToServer, NS)
}

type handler struct{ s *server.Server }

// toServer answers a ping to the server with an empty result (XEP-0199 §4.2).
func (h *handler) toServer(context.Context, *server.IQ) (*xmlel.Element, error) { return nil, nil }

// account answers a ping to the requester's own account like one to the
// server; pings to other accounts get service-unavailable.
func (h *handler) account(_ context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(h.s, iq) {
		return nil, server.ErrServiceUnavailable
	}
	return nil, nil
}
