// Package bookmarks keeps XEP-0402 PEP Native Bookmarks and XEP-0048
// bookmarks in XEP-0049 private XML storage in sync (the
// urn:xmpp:bookmarks:1#compat behaviour of XEP-0402's "Compatibility"
// implementation notes, formerly XEP-0411), so that old and new clients of
// one account see the same group chats.
//
//   - A client that stores <storage xmlns='storage:bookmarks'/> with
//     jabber:iq:private gets the urn:xmpp:bookmarks:1 items replaced to
//     match: new and changed bookmarks are published, removed ones retracted
//     with notification, unchanged ones left alone (XEP-0402 "Publishing via
//     the old specification"). XEP-0402 <extensions/> of an existing item are
//     kept.
//   - A client that publishes or retracts urn:xmpp:bookmarks:1 items (or
//     purges or deletes the node) gets the private storage:bookmarks document
//     rewritten from the items; its non-conference children (<url/>) are
//     kept.
package bookmarks

import (
	"context"
	"encoding/xml"
	"errors"
	"hash/fnv"
	"strings"
	"sync"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NS is the XEP-0402 namespace and node name.
	NS = "urn:xmpp:bookmarks:1"
	// NSCompat is the XEP-0402 feature advertised on accounts whose server
	// converts between XEP-0402 and XEP-0048 private XML storage.
	NSCompat = NS + "#compat"
	// NSLegacy is the XEP-0048 namespace (storage:bookmarks).
	NSLegacy = "storage:bookmarks"
	// NSPrivate is the XEP-0049 private XML storage namespace.
	NSPrivate = "jabber:iq:private"
)

type handler struct {
	s        *server.Server
	svc      *pep.Service
	get, set server.IQHandler // mod/private's handlers, which this wraps
	locks    [32]sync.Mutex   // per-user serialization of conversions, by hash
}

// convertingKey marks the context of the module's own PEP publications.
type convertingKey struct{}

// Register installs the conversion on s and svc. It configures the
// urn:xmpp:bookmarks:1 node's default as XEP-0402 requires (pep.PrivateConfig:
// whitelist, persistent, max items, no last-item delivery), advertises
// urn:xmpp:bookmarks:1#compat on accounts, and follows changes of the node.
//
// To see private XML requests it wraps the jabber:iq:private get and set
// handlers registered by private.Register, which must run first (it panics
// otherwise): their rules and limits apply unchanged; a get of
// storage:bookmarks when nothing is stored returns the bookmarks converted
// from XEP-0402, and a successful set of storage:bookmarks is converted to
// XEP-0402.
func Register(s *server.Server, svc *pep.Service) {
	name := xml.Name{Space: NSPrivate, Local: "query"}
	h := &handler{s: s, svc: svc,
		get: s.IQHandler(server.ToAccount, "get", name),
		set: s.IQHandler(server.ToAccount, "set", name)}
	if h.get == nil || h.set == nil {
		panic("bookmarks: Register needs private.Register first")
	}
	svc.SetDefaultConfig(NS, pep.PrivateConfig())
	svc.OnChange(NS, h.pepChanged)
	s.HandleIQ(server.ToAccount, "get", name, h.privateGet)
	s.HandleIQ(server.ToAccount, "set", name, h.privateSet)
	s.AddFeature(server.ToAccount, NSCompat)
}

func (h *handler) lock(user string) func() {
	f := fnv.New32a()
	f.Write([]byte(user))
	m := &h.locks[f.Sum32()%uint32(len(h.locks))]
	m.Lock()
	return m.Unlock
}

// privateGet answers a private XML get through mod/private (XEP-0049 §2.3);
// for storage:bookmarks with nothing stored it returns the XEP-0402
// bookmarks converted.
func (h *handler) privateGet(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	res, err := h.get(ctx, iq)
	if err != nil || iq.Payload.FirstElement().Name.Space != NSLegacy {
		return res, err
	}
	if stored := res.FirstElement(); stored != nil && (len(stored.Children) > 0 || len(stored.Attr) > 0) {
		return res, nil // a stored document (an empty one is never stored)
	}
	items, err := h.svc.Items(ctx, iq.From.Localpart(), NS)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if len(items) == 0 {
		return res, nil
	}
	return xmlel.New(NSPrivate, "query").Add(toLegacy(items, nil)), nil
}

// privateSet stores through mod/private (XEP-0049 §2.3); a stored
// storage:bookmarks document is then converted to XEP-0402 items.
func (h *handler) privateSet(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	c := iq.Payload.FirstElement()
	if c == nil || c.Name.Space != NSLegacy {
		return h.set(ctx, iq)
	}
	user := iq.From.Localpart()
	unlock := h.lock(user)
	defer unlock()
	if _, err := h.set(ctx, iq); err != nil {
		return nil, err
	}
	if err := h.legacyToPEP(context.WithValue(ctx, convertingKey{}, true), user, c); err != nil {
		h.s.Logger().Warn("bookmarks: XEP-0048 to XEP-0402 conversion failed", "user", user, "err", err)
	}
	return nil, nil
}

// bookmark is one group chat bookmark, in either format.
type bookmark struct {
	name, nick, password string
	autojoin             bool
	extensions           *xmlel.Element // XEP-0402 <extensions/>, nil if none
}

func (b bookmark) equal(o bookmark) bool {
	return b.name == o.name && b.nick == o.nick && b.password == o.password && b.autojoin == o.autojoin &&
		extString(b.extensions) == extString(o.extensions)
}

func extString(e *xmlel.Element) string {
	if e == nil {
		return ""
	}
	return e.String()
}

func truthy(s string) bool { s = strings.TrimSpace(s); return s == "true" || s == "1" }

// parseConference reads a <conference/> of either namespace ns.
func parseConference(c *xmlel.Element, ns string) bookmark {
	b := bookmark{
		name:     c.Get("name"),
		autojoin: truthy(c.Get("autojoin")),
		nick:     c.ChildText(ns, "nick"),
		password: c.ChildText(ns, "password"),
	}
	if ns == NS {
		b.extensions = c.Child(NS, "extensions")
	}
	return b
}

// element renders b as a <conference/> in namespace ns; XEP-0048's carries
// the room JID, XEP-0402's has it as item id.
func (b bookmark) element(ns, room string) *xmlel.Element {
	c := xmlel.New(ns, "conference")
	if ns == NSLegacy {
		c.Set("jid", room)
	}
	c.Set("name", b.name)
	if b.autojoin {
		c.Set("autojoin", "true")
	} else if ns == NSLegacy {
		c.Set("autojoin", "false")
	}
	if b.nick != "" {
		c.Add(xmlel.New(ns, "nick").AddText(b.nick))
	}
	if b.password != "" {
		c.Add(xmlel.New(ns, "password").AddText(b.password))
	}
	if ns == NS && b.extensions != nil {
		c.Add(b.extensions)
	}
	return c
}

// roomJID normalises a bookmark's room address, "" if it is not a JID.
func roomJID(s string) string {
	j, err := jid.Parse(s)
	if err != nil || j.Domainpart() == "" {
		return ""
	}
	return j.Bare().String()
}

// legacyToPEP replaces the XEP-0402 items with the conferences of a
// storage:bookmarks document, publishing only new or changed ones and
// retracting the rest with notification.
func (h *handler) legacyToPEP(ctx context.Context, user string, storage *xmlel.Element) error {
	want := make(map[string]bookmark)
	var order []string
	for _, c := range storage.ChildrenNamed(NSLegacy, "conference") {
		room := roomJID(c.Get("jid"))
		if room == "" {
			continue
		}
		if _, dup := want[room]; !dup {
			order = append(order, room)
		}
		want[room] = parseConference(c, NSLegacy)
	}
	items, err := h.svc.Items(ctx, user, NS)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	have := make(map[string]bookmark)
	var gone []string
	for _, it := range items {
		have[it.ID] = parseConference(it.Payload, NS)
		if _, keep := want[it.ID]; !keep {
			gone = append(gone, it.ID)
		}
	}
	cfg := pep.PrivateConfig()
	for _, room := range order {
		b := want[room]
		old, exists := have[room]
		b.extensions = old.extensions
		if exists && b.equal(old) {
			continue
		}
		if _, err := h.svc.Publish(ctx, user, NS, room, b.element(NS, room), &cfg); err != nil {
			return err
		}
	}
	if len(gone) > 0 {
		return h.svc.Retract(ctx, user, NS, gone, true)
	}
	return nil
}

// toLegacy renders XEP-0402 items as a storage:bookmarks document, keeping
// the non-conference children of old (may be nil).
func toLegacy(items []pep.Item, old *xmlel.Element) *xmlel.Element {
	doc := xmlel.New(NSLegacy, "storage")
	for _, it := range items {
		room := roomJID(it.ID)
		if room == "" || it.Payload.Name != (xml.Name{Space: NS, Local: "conference"}) {
			continue
		}
		doc.Add(parseConference(it.Payload, NS).element(NSLegacy, room))
	}
	if old != nil {
		for _, c := range old.Elements() {
			if c.Name != (xml.Name{Space: NSLegacy, Local: "conference"}) {
				doc.Add(c)
			}
		}
	}
	return doc
}

// pepChanged rewrites the storage:bookmarks document after a change of the
// XEP-0402 node that did not come from legacyToPEP.
func (h *handler) pepChanged(ctx context.Context, user, _ string) {
	if ctx.Value(convertingKey{}) != nil {
		return
	}
	if err := h.pepToLegacy(ctx, user); err != nil {
		h.s.Logger().Warn("bookmarks: XEP-0402 to XEP-0048 conversion failed", "user", user, "err", err)
	}
}

func (h *handler) pepToLegacy(ctx context.Context, user string) error {
	unlock := h.lock(user)
	defer unlock()
	items, err := h.svc.Items(ctx, user, NS)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var old *xmlel.Element
	data, err := h.s.Store().PrivateXML(ctx, user, NSLegacy)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		if old, err = xmlel.Parse(string(data)); err != nil {
			old = nil // unreadable: replaced by the converted items
		}
	}
	doc := toLegacy(items, old)
	if len(doc.Children) == 0 && old == nil {
		return nil
	}
	return h.s.Store().SetPrivateXML(ctx, user, NSLegacy, []byte(doc.String()))
}
