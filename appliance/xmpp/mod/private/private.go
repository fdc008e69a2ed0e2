// Package private implements XEP-0049 Private XML Storage: a user stores
// arbitrary XML fragments on the server, one per namespace, readable and
// writable only by that user (for example legacy XEP-0048 bookmarks).
package private

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

// NS is the XEP-0049 namespace (XEP-0049 §2).
const NS = "jabber:iq:private"

// DefaultMaxBytes is the default limit on one fragment stored with a set
// (XEP-0049 §2.3), measured as its serialized XML.
const DefaultMaxBytes = 64 << 10

// reserved lists the namespaces that cannot be used for storage (XEP-0049
// §2.3): the stanza namespaces and jabber:iq:private itself. A child written
// without its own xmlns inherits jabber:iq:private and so is refused too.
var reserved = map[string]bool{
	server.NSClient: true,
	"jabber:server": true,
	NS:              true,
}

// Option configures Register (XEP-0049 §2.3 storage limits).
type Option func(*handler)

// MaxBytes sets the largest fragment, in bytes of serialized XML, that a user
// may store under one namespace (XEP-0049 §2.3); n <= 0 keeps
// DefaultMaxBytes.
func MaxBytes(n int) Option {
	return func(h *handler) {
		if n > 0 {
			h.max = n
		}
	}
}

// Register handles private XML get and set (XEP-0049 §2.3) and advertises
// jabber:iq:private in the server's disco#info.
//
// Requests must concern the requester's own account (no 'to', or the own bare
// JID); others get forbidden (XEP-0049 §3). The <query/> must hold exactly one
// child element (bad-request otherwise; XEP-0049's "bad-format" is not an RFC
// 6120 condition), qualified by a namespace that is not reserved
// (not-acceptable, XEP-0049 §3). A get returns the fragment stored under the
// child's namespace, or the child as sent if nothing is stored. A set
// replaces the fragment stored under that namespace; an empty child (no
// attributes, no content) deletes it; a fragment over the size limit is
// refused with not-acceptable.
func Register(s *server.Server, opts ...Option) {
	h := &handler{s: s, max: DefaultMaxBytes}
	for _, o := range opts {
		o(h)
	}
	name := xml.Name{Space: NS, Local: "query"}
	s.HandleIQ(server.ToAccount, "get", name, h.get)
	s.HandleIQ(server.ToAccount, "set", name, h.set)
	s.AddFeature(server.ToServer, NS)
}

type handler struct {
	s   *server.Server
	max int
}

// child validates a request (XEP-0049 §2.3, §3) and returns its one child.
func (h *handler) child(iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(h.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "private XML can only be accessed by its owner")
	}
	kids := iq.Payload.Elements()
	if len(kids) != 1 {
		return nil, server.Errorf(server.ErrBadRequest, "the query must contain exactly one child element")
	}
	if reserved[kids[0].Name.Space] {
		return nil, server.Errorf(server.ErrNotAcceptable, "namespace "+strconv.Quote(kids[0].Name.Space)+" is reserved")
	}
	return kids[0], nil
}

// get returns the stored fragment for the child's namespace (XEP-0049 §2.3).
func (h *handler) get(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	c, err := h.child(iq)
	if err != nil {
		return nil, err
	}
	q := xmlel.New(NS, "query")
	data, err := h.s.Store().PrivateXML(ctx, iq.From.Localpart(), c.Name.Space)
	if errors.Is(err, store.ErrNotFound) {
		return q.Add(c), nil
	}
	if err != nil {
		return nil, err
	}
	el, err := xmlel.Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("private: stored %q of %q: %w", c.Name.Space, iq.From.Localpart(), err)
	}
	return q.Add(el), nil
}

// set stores the child under its namespace (XEP-0049 §2.3).
func (h *handler) set(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	c, err := h.child(iq)
	if err != nil {
		return nil, err
	}
	var data []byte
	if len(c.Children) > 0 || len(c.Attr) > 0 {
		data = []byte(c.String())
		if len(data) > h.max {
			return nil, server.Errorf(server.ErrNotAcceptable,
				"private XML too large: "+strconv.Itoa(len(data))+" bytes, the limit is "+strconv.Itoa(h.max))
		}
	}
	if err := h.s.Store().SetPrivateXML(ctx, iq.From.Localpart(), c.Name.Space, data); err != nil {
		return nil, err
	}
	return nil, nil
}
