package pep

import (
	"container/list"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// caps is the XEP-0115 <c/> element of a presence (XEP-0115 §4).
type caps struct{ node, ver, hash string }

// parseCaps returns the entity capabilities of an available presence.
func parseCaps(p *xmlel.Element) (caps, bool) {
	if p == nil {
		return caps{}, false
	}
	c := p.Child(NSCaps, "c")
	if c == nil || c.Get("ver") == "" {
		return caps{}, false
	}
	return caps{node: c.Get("node"), ver: c.Get("ver"), hash: c.Get("hash")}, true
}

// key identifies what a session advertises: for a SHA-1 hash the
// verification string alone (XEP-0115 §5), otherwise (other hashes, legacy
// caps) the whole element, since it cannot be verified and shared.
func (c caps) key() string {
	if c.hash == "sha-1" {
		return c.ver
	}
	return c.hash + "\x00" + c.node + "\x00" + c.ver
}

// capsCache maps verified SHA-1 verification strings to the set of nodes
// whose "+notify" feature they include (XEP-0115 §5.4 caching), evicting the
// least recently used beyond max entries.
type capsCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List
	m   map[string]*list.Element
}

type capsEntry struct {
	ver    string
	notify map[string]bool
}

func (c *capsCache) get(ver string) (map[string]bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[ver]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*capsEntry).notify, true
	}
	return nil, false
}

func (c *capsCache) put(ver string, notify map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*list.Element)
		c.ll = list.New()
	}
	if e, ok := c.m[ver]; ok {
		e.Value.(*capsEntry).notify = notify
		c.ll.MoveToFront(e)
		return
	}
	c.m[ver] = c.ll.PushFront(&capsEntry{ver: ver, notify: notify})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.m, e.Value.(*capsEntry).ver)
	}
}

// sessState is what the service knows of an available session's interests.
type sessState struct {
	key    string          // caps key of its current presence, "" without caps
	notify map[string]bool // nodes it wants notifications for; nil while unknown
	prev   map[string]bool // notify before its caps changed: only new nodes get last items
}

// onAvailable tracks a session's caps (XEP-0163 §4.2 filtered notifications)
// and sends the last published items it is newly interested in (XEP-0163
// §4.3.4): all of them on initial presence, those of newly added "+notify"
// features on a presence whose caps changed. Unknown caps are resolved with
// a disco#info query to the session, asynchronously.
func (svc *Service) onAvailable(ctx context.Context, sess *server.Session, p *xmlel.Element, initial bool) {
	c, ok := parseCaps(p)
	key := ""
	if ok {
		key = c.key()
	}
	svc.sessMu.Lock()
	st := svc.sessions[sess]
	if st == nil || initial {
		st = &sessState{}
		svc.sessions[sess] = st
	} else if key == st.key {
		svc.sessMu.Unlock()
		return
	}
	prev := st.notify
	if prev == nil {
		prev = st.prev // caps changed again before the previous ones were resolved
	}
	st.key, st.notify, st.prev = key, nil, prev
	if !ok {
		st.notify, st.prev = map[string]bool{}, nil
		svc.sessMu.Unlock()
		return
	}
	if c.hash == "sha-1" {
		if notify, hit := svc.caps.get(c.ver); hit {
			st.notify, st.prev = notify, nil
			svc.sessMu.Unlock()
			svc.deliverLast(ctx, sess, added(notify, prev))
			return
		}
	}
	svc.inflight[key] = append(svc.inflight[key], sess)
	first := len(svc.inflight[key]) == 1
	svc.sessMu.Unlock()
	if first {
		go svc.resolve(c, key)
	}
}

// onSessionClosed forgets a session.
func (svc *Service) onSessionClosed(_ context.Context, sess *server.Session) {
	svc.sessMu.Lock()
	delete(svc.sessions, sess)
	svc.sessMu.Unlock()
}

// added returns the nodes in now but not in before.
func added(now, before map[string]bool) map[string]bool {
	if len(before) == 0 {
		return now
	}
	out := make(map[string]bool)
	for n := range now {
		if !before[n] {
			out[n] = true
		}
	}
	return out
}

// resolve queries the sessions waiting for the features behind key, one at a
// time, until one answers: a verified answer (XEP-0115 §5.4) is cached and
// serves every waiting session; an unverifiable one serves only the session
// that gave it. Each served session then gets its last items.
func (svc *Service) resolve(c caps, key string) {
	ctx := context.Background()
	for {
		svc.sessMu.Lock()
		ws := svc.inflight[key]
		for len(ws) > 0 && !svc.waitingLocked(ws[0], key) {
			ws = ws[1:]
		}
		if len(ws) == 0 {
			delete(svc.inflight, key)
			svc.sessMu.Unlock()
			return
		}
		svc.inflight[key] = ws
		target := ws[0]
		svc.sessMu.Unlock()

		notify, verified, err := svc.queryCaps(target, c)
		if err != nil {
			svc.s.Logger().Debug("pep: caps query failed", "jid", target.JID().String(), "err", err)
			notify = map[string]bool{} // do not ask this session again for these caps
		}
		var serve []*server.Session
		svc.sessMu.Lock()
		if verified {
			svc.caps.put(c.ver, notify)
			serve = svc.inflight[key]
			delete(svc.inflight, key)
		} else {
			serve = []*server.Session{target}
			svc.inflight[key] = svc.inflight[key][1:]
		}
		type delivery struct {
			sess  *server.Session
			nodes map[string]bool
		}
		var ds []delivery
		for _, w := range serve {
			if !svc.waitingLocked(w, key) {
				continue
			}
			st := svc.sessions[w]
			ds = append(ds, delivery{w, added(notify, st.prev)})
			st.notify, st.prev = notify, nil
		}
		svc.sessMu.Unlock()
		for _, d := range ds {
			svc.deliverLast(ctx, d.sess, d.nodes)
		}
		if verified {
			return
		}
	}
}

// waitingLocked reports whether sess still waits for the features of key.
func (svc *Service) waitingLocked(sess *server.Session, key string) bool {
	st := svc.sessions[sess]
	return st != nil && st.key == key && st.notify == nil
}

// queryCaps asks sess for the disco#info of its caps node (XEP-0115 §6.3)
// and returns the nodes of its "+notify" features and whether the answer
// matches the verification string (SHA-1 only, XEP-0115 §5.4).
func (svc *Service) queryCaps(sess *server.Session, c caps) (map[string]bool, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), svc.capsTimeout)
	defer cancel()
	iq := xmlel.New(server.NSClient, "iq", "type", "get", "to", sess.JID().String()).
		Add(xmlel.New(disco.NSInfo, "query", "node", c.node+"#"+c.ver))
	res, err := svc.s.Request(ctx, iq)
	if err != nil {
		return nil, false, err
	}
	q := res.Child(disco.NSInfo, "query")
	if res.Get("type") != "result" || q == nil {
		return nil, false, errors.New("no disco#info result")
	}
	if from, err := jid.Parse(res.Get("from")); err != nil || !from.Equal(sess.JID()) {
		return nil, false, errors.New("disco#info answer from " + res.Get("from"))
	}
	var (
		ids    []server.Identity
		feats  []string
		forms  []*xmlel.Element
		seen   = make(map[string]bool)
		dup    bool
		notify = make(map[string]bool)
	)
	for _, el := range q.Elements() {
		switch {
		case el.Name.Space == disco.NSInfo && el.Name.Local == "identity":
			id := server.Identity{Category: el.Get("category"), Type: el.Get("type"), Name: el.Get("name"), Lang: el.Lang()}
			k := "i\x00" + id.Category + "\x00" + id.Type + "\x00" + id.Lang
			dup = dup || seen[k]
			seen[k] = true
			ids = append(ids, id)
		case el.Name.Space == disco.NSInfo && el.Name.Local == "feature":
			f := el.Get("var")
			dup = dup || seen["f\x00"+f]
			seen["f\x00"+f] = true
			feats = append(feats, f)
			if n, ok := strings.CutSuffix(f, "+notify"); ok && n != "" {
				notify[n] = true
			}
		case el.Name.Space == disco.NSData && el.Name.Local == "x":
			forms = append(forms, el)
		}
	}
	verified := c.hash == "sha-1" && !dup && disco.CapsVer(ids, feats, forms) == c.ver
	return notify, verified, nil
}

// Wants reports whether the local session full currently gets
// notifications of node: it is available and its entity capabilities
// (XEP-0115) include node+"+notify" (XEP-0163 §4.2). It is false while the
// session's capabilities are still being discovered. Priority is not
// considered.
func (svc *Service) Wants(full jid.JID, node string) bool {
	for _, sess := range svc.s.Sessions(full.Localpart()) {
		if sess.JID().Equal(full) {
			return svc.wants(sess, node, false)
		}
	}
	return false
}

// wants reports whether sess should get notifications of node: it is
// available, its caps include node+"+notify" and, for a contact's session,
// its priority is not negative (XEP-0163 §4.3.2).
func (svc *Service) wants(sess *server.Session, node string, contact bool) bool {
	if sess.Presence() == nil || (contact && sess.Priority() < 0) {
		return false
	}
	svc.sessMu.Lock()
	defer svc.sessMu.Unlock()
	st := svc.sessions[sess]
	return st != nil && st.notify[node]
}

// eventItems wraps an event item or retraction in <event><items node/></event>.
func eventItems(node string, children ...xmlel.Node) *xmlel.Element {
	return xmlel.New(NSEvent, "event").Add(xmlel.New(NSEvent, "items", "node", node).Add(children...))
}

// broadcast sends event (an <event/> of node) to the owner's interested
// resources and, unless the node is whitelisted, to the interested
// resources of the local contacts with a 'from' or 'both' subscription
// (XEP-0163 §4). Notifications go through the router, so blocking applies
// (XEP-0163 §4.3.3).
func (svc *Service) broadcast(ctx context.Context, owner, node string, cfg Config, event *xmlel.Element) {
	from := svc.bare(owner)
	for _, sess := range svc.s.Sessions(owner) {
		if svc.wants(sess, node, false) {
			svc.send(ctx, from, sess, event, time.Time{})
		}
	}
	if cfg.AccessModel == AccessWhitelist {
		return
	}
	items, _, err := svc.s.Store().Roster(ctx, owner)
	if err != nil {
		svc.s.Logger().Warn("pep: roster read failed", "user", owner, "err", err)
		return
	}
	for _, it := range items {
		if it.Subscription != "from" && it.Subscription != "both" {
			continue
		}
		cj, err := jid.Parse(it.JID)
		if err != nil || !svc.s.IsLocal(cj) || cj.Localpart() == "" || cj.Localpart() == owner {
			continue // remote contacts need federation
		}
		for _, sess := range svc.s.Sessions(cj.Localpart()) {
			if svc.wants(sess, node, true) {
				svc.send(ctx, from, sess, event, time.Time{})
			}
		}
	}
}

// send routes one headline notification from the owner's bare JID to a
// session (XEP-0163 §4.3.1), with a XEP-0203 delay stamp if stamp is set.
func (svc *Service) send(ctx context.Context, from jid.JID, to *server.Session, event *xmlel.Element, stamp time.Time) {
	msg := xmlel.New(server.NSClient, "message", "from", from.String(), "to", to.JID().String(),
		"type", "headline", "id", newID())
	msg.Add(event)
	if !stamp.IsZero() {
		msg.Add(xmlel.New(NSDelay, "delay", "from", from.String(),
			"stamp", stamp.UTC().Format("2006-01-02T15:04:05.000Z")))
	}
	svc.s.Route(ctx, msg)
}

// deliverLast sends sess the last published item of each node in nodes: of
// its own account and, if its priority is not negative, of each local
// contact it has a 'to' or 'both' subscription to whose node it may read
// (XEP-0163 §4.3.4).
func (svc *Service) deliverLast(ctx context.Context, sess *server.Session, nodes map[string]bool) {
	if len(nodes) == 0 || sess.Presence() == nil {
		return
	}
	user := sess.Username()
	svc.sendLast(ctx, user, sess, nodes)
	if sess.Priority() < 0 {
		return
	}
	items, _, err := svc.s.Store().Roster(ctx, user)
	if err != nil {
		svc.s.Logger().Warn("pep: roster read failed", "user", user, "err", err)
		return
	}
	for _, it := range items {
		if it.Subscription != "to" && it.Subscription != "both" {
			continue
		}
		cj, err := jid.Parse(it.JID)
		if err != nil || !svc.s.IsLocal(cj) || cj.Localpart() == "" || cj.Localpart() == user {
			continue
		}
		svc.sendLast(ctx, cj.Localpart(), sess, nodes)
	}
}

// sendLast sends sess the last items of owner's nodes in nodes that deliver
// them on presence and that sess may read.
func (svc *Service) sendLast(ctx context.Context, owner string, sess *server.Session, nodes map[string]bool) {
	lasts, err := svc.s.Store().PEPLastItems(ctx, owner)
	if err != nil {
		return // the account is gone
	}
	from := svc.bare(owner)
	for _, nl := range lasts {
		if nl.Item == nil || !nodes[nl.Node.Name] {
			continue
		}
		cfg, err := unmarshalConfig(nl.Node.Config)
		if err != nil || !cfg.DeliverNotifications || cfg.SendLastPublishedItem != SendLastOnSubAndPresence {
			continue
		}
		if ok, err := svc.mayRead(ctx, owner, cfg, sess.JID()); err != nil || !ok {
			continue
		}
		item := xmlel.New(NSEvent, "item", "id", nl.Item.ID)
		if cfg.DeliverPayloads {
			p, err := xmlel.Parse(string(nl.Item.Payload))
			if err != nil {
				continue
			}
			item.Add(p)
		}
		svc.send(ctx, from, sess, eventItems(nl.Node.Name, item), nl.Item.Published)
	}
}
