// Package disco implements XEP-0030 Service Discovery for the server and for
// accounts, including XEP-0128 extended information forms, and XEP-0115
// Entity Capabilities for the server (the caps stream feature and the
// verification string).
package disco

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"sort"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
)

// Namespaces.
const (
	// NSInfo is the disco#info namespace (XEP-0030 §3.1).
	NSInfo = "http://jabber.org/protocol/disco#info"
	// NSItems is the disco#items namespace (XEP-0030 §4.1).
	NSItems = "http://jabber.org/protocol/disco#items"
	// NSCaps is the entity capabilities namespace (XEP-0115 §4).
	NSCaps = "http://jabber.org/protocol/caps"
	// NSData is the data forms namespace (XEP-0004 §3.1) of XEP-0128 §2
	// extension forms.
	NSData = "jabber:x:data"
)

// DefaultCapsNode is the XEP-0115 §4 'node' identifying the software, used
// unless CapsNode says otherwise.
const DefaultCapsNode = "https://hearth.im"

// Option configures Register (XEP-0115 §6.3 caps node).
type Option func(*handler)

// CapsNode sets the 'node' attribute of the XEP-0115 caps stream feature
// (XEP-0115 §4, §6.3); the disco#info node '<node>#<ver>' is answered with the
// server's info (XEP-0115 §6.2).
func CapsNode(node string) Option { return func(h *handler) { h.node = node } }

// Register installs service discovery:
//
//   - disco#info to the server returns the server's identities, every feature
//     registered with s.AddFeature(server.ToServer, …) and the XEP-0128 forms
//     added with s.AddExtension (XEP-0030 §3.1);
//   - disco#items to the server lists the components (XEP-0030 §4.1: group
//     chat, upload and other services at their own domains, see
//     server.AddComponent);
//   - disco#info and disco#items to an account's bare JID (or with no 'to')
//     return the account's identity and features and an empty item list. They
//     are answered for the account itself and for contacts with a 'from' or
//     'both' subscription to it; anyone else gets service-unavailable, the
//     answer for an account that does not exist (RFC 6121 §8.5.1);
//   - a 'node' other than the caps node '<node>#<ver>' on the server's info is
//     item-not-found (XEP-0030 §3.2, §4.2, §7);
//   - after authentication, stream features include the server's XEP-0115 caps
//     element (XEP-0115 §6.3).
//
// The caps verification string is computed when the features are listed, so
// features registered by modules after Register are included. Register also
// advertises disco#info and disco#items for the server and for accounts.
func Register(s *server.Server, opts ...Option) {
	h := &handler{s: s, node: DefaultCapsNode}
	for _, o := range opts {
		o(h)
	}
	info := xml.Name{Space: NSInfo, Local: "query"}
	items := xml.Name{Space: NSItems, Local: "query"}
	s.HandleIQ(server.ToServer, "get", info, h.serverInfo)
	s.HandleIQ(server.ToServer, "get", items, h.serverItems)
	s.HandleIQ(server.ToAccount, "get", info, h.accountInfo)
	s.HandleIQ(server.ToAccount, "get", items, h.accountItems)
	s.AddFeature(server.ToServer, NSInfo, NSItems)
	s.AddFeature(server.ToAccount, NSInfo, NSItems)
	s.AddStreamFeature(h.capsFeature())
}

type handler struct {
	s    *server.Server
	node string
}

// ver returns the current XEP-0115 verification string of the server.
func (h *handler) ver() string {
	return CapsVer(h.s.DiscoInfo(server.ToServer))
}

// serverInfo answers disco#info to the server (XEP-0030 §3.1), also for the
// caps node (XEP-0115 §6.2).
func (h *handler) serverInfo(_ context.Context, iq *server.IQ) (*xmlel.Element, error) {
	ids, feats, forms := h.s.DiscoInfo(server.ToServer)
	node := iq.Payload.Get("node")
	if node != "" && node != h.node+"#"+CapsVer(ids, feats, forms) {
		return nil, server.ErrItemNotFound
	}
	return infoQuery(node, ids, feats, forms), nil
}

// serverItems answers disco#items to the server (XEP-0030 §4.1): one item
// per component domain, in name order.
func (h *handler) serverItems(_ context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if iq.Payload.Get("node") != "" {
		return nil, server.ErrItemNotFound
	}
	q := xmlel.New(NSItems, "query")
	for _, d := range h.s.Components() {
		q.Add(xmlel.New(NSItems, "item", "jid", d))
	}
	return q, nil
}

// account checks that the requester may discover the addressed account and
// that no node was asked for.
func (h *handler) account(ctx context.Context, iq *server.IQ) error {
	ok, err := modutil.PresenceAuthorized(ctx, h.s, iq.To, iq.From)
	if err != nil {
		return err
	}
	if !ok {
		return server.ErrServiceUnavailable
	}
	if iq.Payload.Get("node") != "" {
		return server.ErrItemNotFound
	}
	return nil
}

// accountInfo answers disco#info to an account (XEP-0030 §3.1).
func (h *handler) accountInfo(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if err := h.account(ctx, iq); err != nil {
		return nil, err
	}
	ids, feats, forms := h.s.DiscoInfo(server.ToAccount)
	return infoQuery("", ids, feats, forms), nil
}

// accountItems answers disco#items to an account (XEP-0030 §4.1): empty.
func (h *handler) accountItems(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if err := h.account(ctx, iq); err != nil {
		return nil, err
	}
	return xmlel.New(NSItems, "query"), nil
}

// infoQuery renders a disco#info result (XEP-0030 §3.1, XEP-0128 §2).
func infoQuery(node string, ids []server.Identity, feats []string, forms []*xmlel.Element) *xmlel.Element {
	q := xmlel.New(NSInfo, "query")
	q.Set("node", node)
	for _, id := range ids {
		el := xmlel.New(NSInfo, "identity", "category", id.Category, "type", id.Type)
		el.Set("name", id.Name)
		if id.Lang != "" {
			el.Attr = append(el.Attr, xml.Attr{Name: xml.Name{Space: xmlel.NSXML, Local: "lang"}, Value: id.Lang})
		}
		q.Add(el)
	}
	for _, f := range feats {
		q.Add(xmlel.New(NSInfo, "feature", "var", f))
	}
	for _, f := range forms {
		q.Add(f.Copy())
	}
	return q
}

// capsFeature is the informational stream feature
// <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='…' ver='…'/>
// listed after authentication (XEP-0115 §6.3).
func (h *handler) capsFeature() xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:      xml.Name{Space: NSCaps, Local: "c"},
		Necessary: xmpp.Authn,
		List: func(_ context.Context, e xmlstream.TokenWriter, start xml.StartElement) (bool, error) {
			start.Attr = []xml.Attr{
				{Name: xml.Name{Local: "hash"}, Value: "sha-1"},
				{Name: xml.Name{Local: "node"}, Value: h.node},
				{Name: xml.Name{Local: "ver"}, Value: h.ver()},
			}
			if err := e.EncodeToken(start); err != nil {
				return false, err
			}
			return false, e.EncodeToken(start.End())
		},
		Parse: func(_ context.Context, d *xml.Decoder, _ *xml.StartElement) (bool, any, error) {
			return false, nil, d.Skip()
		},
	}
}

// CapsVer returns the XEP-0115 verification string for SHA-1 (XEP-0115 §5.1)
// of a disco#info result with the given identities, features and XEP-0128
// forms (<x xmlns='jabber:x:data'/> elements). The inputs need not be sorted.
// Forms without a FORM_TYPE field are left out, as XEP-0115 §5.4 tells
// receivers to ignore them.
func CapsVer(ids []server.Identity, features []string, forms []*xmlel.Element) string {
	var b strings.Builder
	ids = append([]server.Identity(nil), ids...)
	sort.Slice(ids, func(i, j int) bool {
		a, c := ids[i], ids[j]
		if a.Category != c.Category {
			return a.Category < c.Category
		}
		if a.Type != c.Type {
			return a.Type < c.Type
		}
		return a.Lang < c.Lang
	})
	for _, id := range ids {
		b.WriteString(id.Category + "/" + id.Type + "/" + id.Lang + "/" + id.Name + "<")
	}
	features = append([]string(nil), features...)
	sort.Strings(features)
	for _, f := range features {
		b.WriteString(f + "<")
	}
	type field struct {
		name   string
		values []string
	}
	type form struct {
		typ    string
		fields []field
	}
	var fs []form
	for _, x := range forms {
		var f form
		hasType := false
		for _, fl := range x.ChildrenNamed(NSData, "field") {
			var vals []string
			for _, v := range fl.ChildrenNamed(NSData, "value") {
				vals = append(vals, v.Text())
			}
			if name := fl.Get("var"); name == "FORM_TYPE" {
				if len(vals) > 0 {
					f.typ, hasType = vals[0], true
				}
			} else {
				sort.Strings(vals)
				f.fields = append(f.fields, field{name, vals})
			}
		}
		if !hasType {
			continue
		}
		sort.SliceStable(f.fields, func(i, j int) bool { return f.fields[i].name < f.fields[j].name })
		fs = append(fs, f)
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].typ < fs[j].typ })
	for _, f := range fs {
		b.WriteString(f.typ + "<")
		for _, fl := range f.fields {
			b.WriteString(fl.name + "<")
			for _, v := range fl.values {
				b.WriteString(v + "<")
			}
		}
	}
	sum := sha1.Sum([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}
