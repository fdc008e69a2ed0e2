// Package blocking implements XEP-0191 Blocking Command: each account keeps a
// persistent list of blocked JIDs, managed with IQs from its own resources,
// and the server enforces it on every stanza to and from the account.
//
// Enforcement (XEP-0191 §3.3) runs in the server's stanza filters
// (server.OnInbound, server.OnOutbound) and, for messages a user sends, in a
// server.OnMessageOut hook so a refused message is neither carbon-copied
// nor archived: register this module before carbons and the archive.
//
//   - From a blocked JID to the user: presence (all types) and messages are
//     dropped silently; IQ get/set are answered with service-unavailable
//     (as if the user were offline); IQ result/error are dropped.
//   - From the user to a blocked JID: presence is dropped silently (so
//     broadcasts simply skip the contact); messages and IQ get/set are
//     answered with not-acceptable carrying <blocked
//     xmlns='urn:xmpp:blocking:errors'/>; IQ result/error are dropped.
//
// XEP-0191 §3.3 says the server SHOULD answer a blocked contact's message
// with service-unavailable; Hearth drops it silently instead, which gives
// the blocked contact no signal at all (an answer would differ from what a
// message to an offline account gets: offline storage).
//
// Stanzas between an account and itself, and from or to the server's own
// domain JID, are never filtered.
//
// Block lists are cached in memory (bounded, least recently used accounts
// evicted) because the filters run for every stanza; a change through this
// module updates the cache. Changes made to the store by other means are
// seen once the account's entry is evicted.
package blocking

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Namespaces (XEP-0191 §9.1).
const (
	// NS qualifies <blocklist/>, <block/>, <unblock/> and <item/>.
	NS = "urn:xmpp:blocking"
	// NSErrors qualifies the <blocked/> application error condition.
	NSErrors = "urn:xmpp:blocking:errors"
)

// DefaultMaxItems is the default limit on the number of JIDs one account may
// block.
const DefaultMaxItems = 1000

// DefaultCacheSize is the default number of accounts whose block list is
// kept in memory.
const DefaultCacheSize = 1024

// ErrBlocked is the error answering a stanza the user sent to a JID they
// block (XEP-0191 §3.3): not-acceptable of type cancel. The reply also
// carries <blocked xmlns='urn:xmpp:blocking:errors'/>.
var ErrBlocked = &server.StanzaError{Type: stanza.Cancel, Condition: stanza.NotAcceptable}

// errTooMany refuses a block that would exceed the per-account limit.
var errTooMany = &server.StanzaError{Type: stanza.Modify, Condition: stanza.PolicyViolation}

// Option configures Register.
type Option func(*Module)

// MaxItems sets how many JIDs one account may block; a block request that
// would exceed it is refused with policy-violation. n <= 0 keeps
// DefaultMaxItems.
func MaxItems(n int) Option {
	return func(m *Module) {
		if n > 0 {
			m.maxItems = n
		}
	}
}

// CacheSize sets how many accounts' block lists are cached in memory;
// n <= 0 keeps DefaultCacheSize.
func CacheSize(n int) Option {
	return func(m *Module) {
		if n > 0 {
			m.cache.max = n
		}
	}
}

// Module is the registered blocking service. Its methods are safe for
// concurrent use.
type Module struct {
	s        *server.Server
	maxItems int
	cache    cache

	mu         sync.Mutex
	interested map[*server.Session]struct{} // sessions that requested the block list (XEP-0191 §3.2)

	// exempt holds stanzas this module routes itself (error replies and the
	// unavailable presence of §3.3), with the username whose filters must let
	// them through.
	exempt sync.Map // *xmlel.Element -> string
}

// Register installs XEP-0191 on s and returns the module:
//
//   - IQ get <blocklist/> (no 'to', or to one's own bare JID) returns the
//     account's blocked JIDs and subscribes the session to block list pushes
//     (§3.2);
//   - IQ set <block/> with one or more <item jid='…'/> blocks those JIDs
//     (§3.3): bad-request without items, jid-malformed for an invalid JID,
//     policy-violation beyond MaxItems. Contacts that receive the user's
//     presence and are now blocked get unavailable presence from each of the
//     user's available resources;
//   - IQ set <unblock/> with items unblocks those JIDs, without items every JID
//     (§3.4, §3.5); contacts no longer blocked get the user's current
//     presence;
//   - every change is pushed as an IQ set with the request's <block/> or
//     <unblock/> (JIDs normalised) to each of the user's sessions that
//     requested the block list (§3.3, §3.4);
//   - other accounts' lists are not accessible: service-unavailable;
//   - the server's disco#info lists urn:xmpp:blocking (§3.1).
//
// Blocked JIDs are normalised (RFC 7622) and match per XEP-0191 §6:
// user@domain/resource matches only that resource, user@domain any
// resource of the account, domain/resource only that JID, and domain the
// domain itself and every JID at it or at a subdomain of it.
func Register(s *server.Server, opts ...Option) *Module {
	m := &Module{
		s:          s,
		maxItems:   DefaultMaxItems,
		cache:      cache{max: DefaultCacheSize},
		interested: make(map[*server.Session]struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	s.HandleIQ(server.ToAccount, "get", xml.Name{Space: NS, Local: "blocklist"}, m.get)
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NS, Local: "block"}, m.block)
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NS, Local: "unblock"}, m.unblock)
	s.AddFeature(server.ToServer, NS)
	s.OnMessageOut(m.messageOut)
	s.OnInbound(m.inbound)
	s.OnOutbound(m.outbound)
	s.OnSessionClosed(func(_ context.Context, sess *server.Session) {
		m.mu.Lock()
		delete(m.interested, sess)
		m.mu.Unlock()
	})
	return m
}

// Blocks reports whether the local account username blocks j under the
// XEP-0191 §6 matching rules. A store failure is logged and reported as not
// blocked (the filters fail open rather than lose stanzas).
func (m *Module) Blocks(ctx context.Context, username string, j jid.JID) bool {
	return m.list(ctx, username).matches(j)
}

// get answers a block list request (XEP-0191 §3.2).
func (m *Module) get(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(m.s, iq) {
		return nil, server.ErrServiceUnavailable
	}
	jids, err := m.s.Store().Blocklist(ctx, iq.From.Localpart())
	if err != nil {
		return nil, err
	}
	if iq.Session != nil {
		m.mu.Lock()
		m.interested[iq.Session] = struct{}{}
		m.mu.Unlock()
	}
	return itemsElement("blocklist", jids), nil
}

// block adds JIDs to the requester's block list (XEP-0191 §3.3).
func (m *Module) block(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(m.s, iq) {
		return nil, server.ErrServiceUnavailable
	}
	jids, err := parseItems(iq.Payload)
	if err != nil {
		return nil, err
	}
	if len(jids) == 0 {
		return nil, server.Errorf(server.ErrBadRequest, "block needs at least one item (XEP-0191 §3.3)")
	}
	user := iq.From.Localpart()
	added, err := m.s.Store().Block(ctx, user, jids, m.maxItems)
	if errors.Is(err, store.ErrQuotaExceeded) {
		return nil, server.Errorf(errTooMany, "you can block at most "+itoa(m.maxItems)+" addresses")
	}
	if err != nil {
		return nil, err
	}
	m.cache.invalidate(user)
	if len(added) > 0 {
		m.announceBlocked(ctx, user, added)
	}
	m.push(user, itemsElement("block", jids))
	return nil, nil
}

// unblock removes JIDs, or all of them, from the requester's block list
// (XEP-0191 §3.4, §3.5).
func (m *Module) unblock(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(m.s, iq) {
		return nil, server.ErrServiceUnavailable
	}
	jids, err := parseItems(iq.Payload)
	if err != nil {
		return nil, err
	}
	user := iq.From.Localpart()
	var removed []string
	if len(jids) == 0 {
		removed, err = m.s.Store().UnblockAll(ctx, user)
	} else {
		removed, err = m.s.Store().Unblock(ctx, user, jids)
	}
	if err != nil {
		return nil, err
	}
	m.cache.invalidate(user)
	if len(removed) > 0 {
		m.announceUnblocked(ctx, user, removed)
	}
	m.push(user, itemsElement("unblock", jids))
	return nil, nil
}

// parseItems returns the normalised, deduplicated JIDs of a request's
// <item/> children, or jid-malformed.
func parseItems(p *xmlel.Element) ([]string, error) {
	var out []string
	seen := make(map[string]bool)
	for _, it := range p.ChildrenNamed(NS, "item") {
		j, err := jid.Parse(it.Get("jid"))
		if err != nil || it.Get("jid") == "" {
			return nil, server.Errorf(server.ErrJIDMalformed, "invalid JID "+quote(it.Get("jid")))
		}
		if k := j.String(); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// itemsElement builds <name xmlns='urn:xmpp:blocking'> with one <item/> per JID.
func itemsElement(name string, jids []string) *xmlel.Element {
	el := xmlel.New(NS, name)
	for _, j := range jids {
		el.Add(xmlel.New(NS, "item", "jid", j))
	}
	return el
}

// push sends a block list push to each of user's sessions that requested
// the block list (XEP-0191 §3.3, §3.4).
func (m *Module) push(user string, payload *xmlel.Element) {
	for _, sess := range m.s.Sessions(user) {
		m.mu.Lock()
		_, ok := m.interested[sess]
		m.mu.Unlock()
		if !ok {
			continue
		}
		iq := xmlel.New(server.NSClient, "iq", "type", "set", "id", "block-"+randomID(), "to", sess.JID().String())
		sess.Send(iq.Add(payload))
	}
}

// announceBlocked sends unavailable presence from each of user's available
// resources to the contacts allowed to see the user's presence that the
// newly blocked JIDs cover (XEP-0191 §3.3; RFC 6121 §4.3 subscription
// 'from' or 'both').
func (m *Module) announceBlocked(ctx context.Context, user string, added []string) {
	targets := m.presenceContacts(ctx, user, added, func(jid.JID) bool { return true })
	if len(targets) == 0 {
		return
	}
	for _, sess := range m.s.Sessions(user) {
		if !sess.Available() {
			continue
		}
		for _, t := range targets {
			p := xmlel.New(server.NSClient, "presence", "type", "unavailable", "from", sess.JID().String(), "to", t.String())
			m.routeExempt(ctx, p, user)
		}
	}
}

// announceUnblocked sends the current presence of each of user's available
// resources to the contacts allowed to see it that the removed JIDs covered
// and no remaining entry blocks (XEP-0191 §3.4).
func (m *Module) announceUnblocked(ctx context.Context, user string, removed []string) {
	l := m.list(ctx, user)
	targets := m.presenceContacts(ctx, user, removed, func(j jid.JID) bool { return !l.matches(j) })
	if len(targets) == 0 {
		return
	}
	for _, sess := range m.s.Sessions(user) {
		p := sess.Presence()
		if p == nil {
			continue
		}
		for _, t := range targets {
			c := p.ShallowCopy()
			c.Set("to", t.String())
			m.s.Route(ctx, c)
		}
	}
}

// presenceContacts returns the addresses among user's roster contacts with
// subscription 'from' or 'both' that one of the entries covers and keep
// accepts: the contact's bare JID, or the full JID a full-JID entry names.
func (m *Module) presenceContacts(ctx context.Context, user string, entries []string, keep func(jid.JID) bool) []jid.JID {
	items, _, err := m.s.Store().Roster(ctx, user)
	if err != nil {
		m.s.Logger().Error("blocking: roster read failed", "user", user, "err", err)
		return nil
	}
	var out []jid.JID
	seen := make(map[string]bool)
	for _, it := range items {
		if it.Subscription != "from" && it.Subscription != "both" {
			continue
		}
		c, err := jid.Parse(it.JID)
		if err != nil {
			continue
		}
		for _, e := range entries {
			ej, err := jid.Parse(e)
			if err != nil {
				continue
			}
			var t jid.JID
			switch {
			case ej.Resourcepart() != "" && ej.Localpart() != "":
				if !ej.Bare().Equal(c) {
					continue
				}
				t = ej
			case (blockList{e: {}}).matches(c):
				t = c
			default:
				continue
			}
			if k := t.String(); !seen[k] && keep(t) {
				seen[k] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// messageOut refuses a message the user sends to a JID they block before
// any other outgoing hook sees it (XEP-0191 §3.3).
func (m *Module) messageOut(ctx context.Context, msg *server.Message) bool {
	if m.skip(msg.From, msg.To) || !m.Blocks(ctx, msg.From.Localpart(), msg.To) {
		return false
	}
	if msg.Type != "error" {
		m.replyBlocked(ctx, msg.Stanza, msg.From.Localpart())
	}
	return true
}

// inbound drops stanzas from JIDs the recipient blocks (XEP-0191 §3.3).
func (m *Module) inbound(ctx context.Context, st *xmlel.Element, from, to jid.JID) bool {
	if m.isExempt(st, to.Localpart()) || m.skip(from, to) || !m.Blocks(ctx, to.Localpart(), from) {
		return true
	}
	if st.Name.Local == "iq" && (st.Get("type") == "get" || st.Get("type") == "set") {
		m.routeExempt(ctx, server.ErrorReply(st, server.ErrServiceUnavailable), to.Localpart())
	}
	return false
}

// outbound refuses stanzas the user sends to JIDs they block (XEP-0191 §3.3).
func (m *Module) outbound(ctx context.Context, st *xmlel.Element, from, to jid.JID) bool {
	if m.isExempt(st, from.Localpart()) || m.skip(from, to) || !m.Blocks(ctx, from.Localpart(), to) {
		return true
	}
	switch typ := st.Get("type"); st.Name.Local {
	case "message":
		if typ != "error" {
			m.replyBlocked(ctx, st, from.Localpart())
		}
	case "iq":
		if typ == "get" || typ == "set" {
			m.replyBlocked(ctx, st, from.Localpart())
		}
	}
	return false
}

// skip reports stanzas the block lists never apply to: within one account,
// to or from the server itself, or without a peer address.
func (m *Module) skip(a, b jid.JID) bool {
	return a.String() == "" || b.String() == "" || a.Bare().Equal(b.Bare()) ||
		a.Equal(m.s.Domain()) || b.Equal(m.s.Domain())
}

// replyBlocked answers st, sent by the local account user to a JID that
// account blocks, with not-acceptable and <blocked/> (XEP-0191 §3.3).
func (m *Module) replyBlocked(ctx context.Context, st *xmlel.Element, user string) {
	r := server.ErrorReply(st, ErrBlocked)
	if e := r.Child(server.NSClient, "error"); e != nil {
		e.Add(xmlel.New(NSErrors, "blocked"))
	}
	m.routeExempt(ctx, r, user)
}

// routeExempt routes a stanza this module generated past user's block list.
func (m *Module) routeExempt(ctx context.Context, st *xmlel.Element, user string) {
	m.exempt.Store(st, user)
	defer m.exempt.Delete(st)
	m.s.Route(ctx, st)
}

func (m *Module) isExempt(st *xmlel.Element, user string) bool {
	u, ok := m.exempt.Load(st)
	return ok && u.(string) == user
}

// list returns username's block list from the cache or the store.
func (m *Module) list(ctx context.Context, username string) blockList {
	if l, ok := m.cache.get(username); ok {
		return l
	}
	gen := m.cache.generation()
	jids, err := m.s.Store().Blocklist(ctx, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		m.s.Logger().Error("blocking: reading block list failed", "user", username, "err", err)
		return nil
	}
	var l blockList
	if len(jids) > 0 {
		l = make(blockList, len(jids))
		for _, j := range jids {
			l[j] = struct{}{}
		}
	}
	m.cache.put(username, l, gen)
	return l
}

// blockList is one account's block list: the normalised JID strings.
type blockList map[string]struct{}

// matches applies the XEP-0191 §6 rules: the full JID, its bare JID, then
// the domain and each parent domain (a domain entry covers its subdomains).
func (l blockList) matches(j jid.JID) bool {
	if len(l) == 0 || j.Domainpart() == "" {
		return false
	}
	if _, ok := l[j.String()]; ok {
		return true
	}
	if j.Localpart() != "" && j.Resourcepart() != "" {
		if _, ok := l[j.Bare().String()]; ok {
			return true
		}
	}
	for d := j.Domainpart(); ; {
		if _, ok := l[d]; ok {
			return true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return false
		}
		d = d[i+1:]
	}
}

// cache is a bounded LRU of block lists by username. A nil list (no
// blocked JIDs) is cached too: it is by far the most common case.
type cache struct {
	mu      sync.Mutex
	max     int
	gen     uint64 // bumped by every invalidation
	entries map[string]*list.Element
	lru     list.List // front = most recently used; values are *cacheEntry
}

type cacheEntry struct {
	user string
	l    blockList
}

func (c *cache) get(user string) (blockList, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[user]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).l, true
}

func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches l for user unless an invalidation happened since gen was read
// (the list read from the store may then be stale).
func (c *cache) put(user string, l blockList, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.entries == nil {
		c.entries = make(map[string]*list.Element)
	}
	if e, ok := c.entries[user]; ok {
		e.Value.(*cacheEntry).l = l
		c.lru.MoveToFront(e)
		return
	}
	c.entries[user] = c.lru.PushFront(&cacheEntry{user: user, l: l})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).user)
	}
}

func (c *cache) invalidate(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if e, ok := c.entries[user]; ok {
		c.lru.Remove(e)
		delete(c.entries, user)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func quote(s string) string { return strconv.Quote(s) }

// randomID returns a short random stanza id.
func randomID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
