// Package vcard implements XEP-0054 vcard-temp: each account has one vCard,
// stored by the server, readable by other users and writable by its owner.
package vcard

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// NS is the vcard-temp namespace (XEP-0054 §3.1).
const NS = "vcard-temp"

// DefaultMaxBytes is the default limit on a vCard stored with a set
// (XEP-0054 §3.2), measured as its serialized XML (so an embedded XEP-0153
// avatar counts with its base64).
const DefaultMaxBytes = 64 << 10

// Option configures Register (XEP-0054 §3.2 storage limits).
type Option func(*handler)

// MaxBytes sets the largest vCard, in bytes of serialized XML, that a user may
// store (XEP-0054 §3.2); n <= 0 keeps DefaultMaxBytes.
func MaxBytes(n int) Option {
	return func(h *handler) {
		if n > 0 {
			h.max = n
		}
	}
}

// Register handles vCard retrieval and updates for accounts (XEP-0054 §3)
// and advertises vcard-temp in the server's disco#info (XEP-0054 §4).
//
//   - get with no 'to' or to one's own bare JID returns the user's vCard, or
//     an empty <vCard/> if none was stored (XEP-0054 §3.1);
//   - get to another account's bare JID returns that vCard, or
//     service-unavailable if none was stored, the same answer as for an
//     account that does not exist (XEP-0054 §3.3);
//   - set is allowed only for one's own account (forbidden otherwise,
//     XEP-0054 §3.2) and replaces the whole vCard; a vCard larger than the
//     limit is refused with not-acceptable; an empty <vCard/> deletes it.
//
// vCards sent to the server's own JID get service-unavailable: the server
// has no vCard.
func Register(s *server.Server, opts ...Option) {
	h := &handler{s: s, max: DefaultMaxBytes}
	for _, o := range opts {
		o(h)
	}
	name := xml.Name{Space: NS, Local: "vCard"}
	s.HandleIQ(server.ToAccount, "get", name, h.get)
	s.HandleIQ(server.ToAccount, "set", name, h.set)
	s.AddFeature(server.ToServer, NS)
}

type handler struct {
	s   *server.Server
	max int
}

// get returns the addressed account's vCard (XEP-0054 §3.1, §3.3).
func (h *handler) get(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	own := modutil.IsOwner(h.s, iq)
	data, err := h.s.Store().VCard(ctx, iq.To.Localpart())
	switch {
	case errors.Is(err, store.ErrNotFound) && own:
		return xmlel.New(NS, "vCard"), nil
	case errors.Is(err, store.ErrNotFound):
		return nil, server.ErrServiceUnavailable
	case err != nil:
		return nil, err
	}
	el, err := xmlel.Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("vcard: stored vCard of %q: %w", iq.To.Localpart(), err)
	}
	return el, nil
}

// set replaces the requester's own vCard (XEP-0054 §3.2).
func (h *handler) set(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(h.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "you can only change your own vCard")
	}
	var data []byte
	if len(iq.Payload.Elements()) > 0 {
		data = []byte(iq.Payload.String())
		if len(data) > h.max {
			return nil, server.Errorf(server.ErrNotAcceptable,
				"vCard too large: "+strconv.Itoa(len(data))+" bytes, the limit is "+strconv.Itoa(h.max))
		}
	}
	if err := h.s.Store().SetVCard(ctx, iq.From.Localpart(), data); err != nil {
		return nil, err
	}
	return nil, nil
}
