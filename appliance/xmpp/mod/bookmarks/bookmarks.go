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
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
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

// DefaultMaxBytes is the private XML size limit used unless MaxBytes says
// otherwise; it equals mod/private's DefaultMaxBytes.
const DefaultMaxBytes = 64 << 10

// Option configures Register.
type Option func(*handler)

// MaxBytes sets the largest fragment, in bytes of serialized XML, a user may
// store under one namespace with jabber:iq:private (XEP-0049 §2.3), as
// private.MaxBytes does; n <= 0 keeps DefaultMaxBytes. Pass the same limit to
// both.
func MaxBytes(n int) Option {
	return func(h *handler) {
		if n > 0 {
			h.max = n
		}
	}
}

// reserved are the namespaces XEP-0049 §2.3 forbids for storage.
var reserved = map[string]bool{server.NSClient: true, "jabber:server": true, NSPrivate: true}

type handler struct {
	s     *server.Server
	svc   *pep.Service
	max   int
	locks [32]sync.Mutex // per-user serialization of conversions, by hash
}

// convertingKey marks the context of the module's own PEP publications.
type convertingKey struct{}

// Register installs the conversion on s and svc. It configures the
// urn:xmpp:bookmarks:1 node's default as XEP-0402 requires (pep.PrivateConfig:
// whitelist, persistent, max items, no last-item delivery), advertises
// urn:xmpp:bookmarks:1#compat on accounts, and follows changes of the node.
//
// To see private XML sets it replaces mod/private's jabber:iq:private get and
// set handlers with equivalent ones (the same rules as private.Register: own
// account only, exactly one child, no reserved namespace, size limit, an
// empty child deletes; a get of storage:bookmarks when nothing is stored
// returns the bookmarks converted from XEP-0402), so call it after
// private.Register and pass the same MaxBytes.
func Register(s *server.Server, svc *pep.Service, opts ...Option) {
	h := &handler{s: s, svc: svc, max: DefaultMaxBytes}
	for _, o := range opts {
		o(h)
	}
	svc.SetDefaultConfig(NS, pep.PrivateConfig())
	svc.OnChange(NS, h.pepChanged)
	name := xml.Name{Space: NSPrivate, Local: "query"}
	s.HandleIQ(server.ToAccount, "get", name, h.get)
	s.HandleIQ(server.ToAccount, "set", name, h.set)
	s.AddFeature(server.ToAccount, NSCompat)
}

func (h *handler) lock(user string) func() {
	f := fnv.New32a()
	f.Write([]byte(user))
	m := &h.locks[f.Sum32()%uint32(len(h.locks))]
	m.Lock()
	return m.Unlock
}

// child validates a private XML request (XEP-0049 §2.3, §3) and returns its
// one child.
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

// get returns the stored fragment (XEP-0049 §2.3); for storage:bookmarks
// with nothing stored, the XEP-0402 bookmarks converted.
func (h *handler) get(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	c, err := h.child(iq)
	if err != nil {
		return nil, err
	}
	user := iq.From.Localpart()
	q := xmlel.New(NSPrivate, "query")
	data, err := h.s.Store().PrivateXML(ctx, user, c.Name.Space)
	switch {
	case errors.Is(err, store.ErrNotFound) && c.Name.Space == NSLegacy:
		items, err := h.svc.Items(ctx, user, NS)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if len(items) == 0 {
			return q.Add(c), nil
		}
		return q.Add(toLegacy(items, nil)), nil
	case errors.Is(err, store.ErrNotFound):
		return q.Add(c), nil
	case err != nil:
		return nil, err
	}
	el, err := xmlel.Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("bookmarks: stored private XML %q of %q: %w", c.Name.Space, user, err)
	}
	return q.Add(el), nil
}

// set stores the fragment (XEP-0049 §2.3); storage:bookmarks is then
// converted to XEP-0402 items.
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
	user := iq.From.Localpart()
	if c.Name.Space != NSLegacy {
		return nil, h.s.Store().SetPrivateXML(ctx, user, c.Name.Space, data)
	}
	unlock := h.lock(user)
	defer unlock()
	if err := h.s.Store().SetPrivateXML(ctx, user, c.Name.Space, data); err != nil {
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
