package muc

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"golang.org/x/text/secure/precis"
	"mellium.im/xmpp/jid"
)

// Affiliations (XEP-0045 §5.2) and roles (§5.1).
const (
	affOwner   = "owner"
	affAdmin   = "admin"
	affMember  = "member"
	affNone    = "none"
	affOutcast = "outcast"

	roleModerator   = "moderator"
	roleParticipant = "participant"
	roleVisitor     = "visitor"
	roleNone        = "none"
)

// affRank orders affiliations by privilege (XEP-0045 §5.2).
func affRank(a string) int {
	switch a {
	case affOwner:
		return 3
	case affAdmin:
		return 2
	case affMember:
		return 1
	case affOutcast:
		return -1
	}
	return 0
}

// roleRank orders roles by privilege (XEP-0045 §5.1).
func roleRank(r string) int {
	switch r {
	case roleModerator:
		return 3
	case roleParticipant:
		return 2
	case roleVisitor:
		return 1
	}
	return 0
}

// room is one live room. Every field below mu is guarded by it.
type room struct {
	svc  *Service
	name string  // localpart
	jid  jid.JID // bare room JID

	mu      sync.Mutex
	gone    bool // destroyed or emptied: look the room up again
	cfg     RoomConfig
	locked  bool // created, awaiting its configuration (XEP-0045 §10.1)
	saved   bool // has a row in the store
	created time.Time
	affs    map[string]affiliation // by bare JID (or domain)
	occ     map[string]*occupant   // by nickname compare key
	byJID   map[string]*occupant   // by real full JID
	subject struct {
		text, nick string
		at         time.Time
	}
	vcard     []byte
	photo     string // XEP-0153 SHA-1 of the vCard photo, "" for none
	history   []histEntry
	histReady bool

	out     []*xmlel.Element // outbox, see flush
	sending bool
}

// affiliation is one affiliation list entry.
type affiliation struct {
	aff, reason string
}

// occupant is one nickname in the room: one real bare JID with one or more
// sessions (Prosody-style multi-session nicks).
type occupant struct {
	nick     string // as joined (the resource of the occupant JID)
	key      string // precis.Nickname compare key
	bare     jid.JID
	role     string
	id       string // XEP-0421 occupant-id
	sessions []*occSession
}

// occSession is one real full JID joined under a nickname, with its last
// presence.
type occSession struct {
	jid  jid.JID
	pres *xmlel.Element
}

// histEntry is one message of the join history.
type histEntry struct {
	msg   *xmlel.Element // as broadcast, without 'to'
	at    time.Time
	chars int
}

// newRoom returns an empty room named name with configuration cfg.
func (svc *Service) newRoom(name string, cfg RoomConfig) *room {
	return &room{
		svc:   svc,
		name:  name,
		jid:   jid.MustParse(name + "@" + svc.domain.Domainpart()),
		cfg:   cfg,
		affs:  make(map[string]affiliation),
		occ:   make(map[string]*occupant),
		byJID: make(map[string]*occupant),
	}
}

// restore builds a room from its stored row and affiliations.
func (svc *Service) restore(ctx context.Context, sr store.MUCRoom) (*room, error) {
	if _, err := jid.Parse(sr.Name + "@" + svc.domain.Domainpart()); err != nil {
		return nil, err
	}
	var cfg RoomConfig
	if err := json.Unmarshal(sr.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := svc.newRoom(sr.Name, cfg)
	r.saved = true
	r.created = sr.Created
	r.subject.text, r.subject.nick, r.subject.at = sr.Subject, sr.SubjectNick, sr.SubjectStamp
	r.setVCard(sr.VCard)
	affs, err := svc.s.Store().MUCAffiliations(ctx, sr.Name)
	if err != nil {
		return nil, err
	}
	for _, a := range affs {
		r.affs[a.JID] = affiliation{aff: a.Affiliation, reason: a.Reason}
	}
	return r, nil
}

// save stores the room's configuration, subject and vCard, and on the
// first save its affiliations.
func (r *room) save(ctx context.Context) error {
	cfg, err := json.Marshal(r.cfg)
	if err != nil {
		return err
	}
	st := r.svc.s.Store()
	sr, err := st.SaveMUCRoom(ctx, store.MUCRoom{
		Name: r.name, Config: cfg,
		Subject: r.subject.text, SubjectNick: r.subject.nick, SubjectStamp: r.subject.at,
		VCard: r.vcard,
	})
	if err != nil {
		return err
	}
	r.created = sr.Created
	if !r.saved {
		var all []store.MUCAffiliation
		for j, a := range r.affs {
			all = append(all, store.MUCAffiliation{JID: j, Affiliation: a.aff, Reason: a.reason})
		}
		if err := st.SetMUCAffiliations(ctx, r.name, all); err != nil {
			return err
		}
		r.saved = true
	}
	return nil
}

// saveOrLog saves the room and logs a failure (for changes whose stanza
// has been answered already).
func (r *room) saveOrLog(ctx context.Context) {
	if !r.saved {
		return
	}
	if err := r.save(ctx); err != nil {
		r.svc.s.Logger().Error("muc: saving room failed", "room", r.name, "err", err)
	}
}

// setVCard replaces the room's vCard and computes its photo hash.
func (r *room) setVCard(data []byte) {
	r.vcard, r.photo = nil, ""
	if len(data) == 0 {
		return
	}
	r.vcard = data
	el, err := xmlel.Parse(string(data))
	if err != nil {
		return
	}
	if p := el.Child(NSVCard, "PHOTO"); p != nil {
		if img, err := decodeBase64(p.ChildText(NSVCard, "BINVAL")); err == nil && len(img) > 0 {
			sum := sha1.Sum(img)
			r.photo = hex.EncodeToString(sum[:])
		}
	}
}

// decodeBase64 decodes base64 with line breaks and spaces (XEP-0153 §3.1).
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}

// send queues st for routing after the room's lock is released (see flush).
func (r *room) send(st *xmlel.Element) { r.out = append(r.out, st) }

// fail queues the error answering st.
func (r *room) fail(st *xmlel.Element, se *server.StanzaError) {
	if st.Get("type") != "error" {
		r.send(server.ErrorReply(st, se))
	}
}

// flush releases the room's lock and routes the outbox in order. Only one
// goroutine routes a room's stanzas at a time; another that finds the room
// sending leaves its stanzas to it. Routing happens without the lock, so a
// stanza bounced back to the room (an occupant that vanished) is handled on
// the same goroutine without deadlock and its output joins the queue.
func (r *room) flush(ctx context.Context) {
	if r.sending {
		r.mu.Unlock()
		return
	}
	r.sending = true
	for {
		out := r.out
		r.out = nil
		if len(out) == 0 {
			r.sending = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		for _, st := range out {
			r.svc.s.Route(ctx, st)
		}
		r.mu.Lock()
	}
}

// affOf returns the affiliation of a real JID (its bare JID, else its
// domain: a banned server).
func (r *room) affOf(j jid.JID) string {
	if a, ok := r.affs[j.Bare().String()]; ok {
		return a.aff
	}
	if a, ok := r.affs[j.Domainpart()]; ok && a.aff == affOutcast {
		return a.aff
	}
	return affNone
}

// defaultRole is the role an occupant with affiliation aff gets on entering
// (XEP-0045 §5.1.2, §5.2).
func (r *room) defaultRole(aff string) string {
	switch aff {
	case affOwner, affAdmin:
		return roleModerator
	case affMember:
		return roleParticipant
	case affOutcast:
		return roleNone
	}
	if r.cfg.Moderated {
		return roleVisitor
	}
	return roleParticipant
}

// occJID returns the occupant JID room@service/nick.
func (r *room) occJID(nick string) jid.JID {
	j, err := r.jid.WithResource(nick)
	if err != nil {
		return r.jid
	}
	return j
}

// nickKey returns the compare key of a nickname (RFC 8266 Nickname
// profile), or an error for a nickname it does not allow.
func nickKey(nick string) (string, error) {
	if nick == "" {
		return "", errors.New("empty nickname")
	}
	if _, err := precis.Nickname.String(nick); err != nil {
		return "", err
	}
	return precis.Nickname.CompareKey(nick)
}

// sortedOccupants returns the occupants in nickname order.
func (r *room) sortedOccupants() []*occupant {
	out := make([]*occupant, 0, len(r.occ))
	for _, o := range r.occ {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// session returns the occupant session of a real full JID, or nil.
func (r *room) session(o *occupant, full jid.JID) *occSession {
	for _, s := range o.sessions {
		if s.jid.Equal(full) {
			return s
		}
	}
	return nil
}

// current returns the occupant's latest session (whose presence and JID
// represent it).
func (o *occupant) current() *occSession { return o.sessions[len(o.sessions)-1] }

// showsJIDTo reports whether recipient may see occupants' real JIDs
// (XEP-0045 §7.2.3-4: anyone in non-anonymous rooms, moderators otherwise).
func (r *room) showsJIDTo(recipient *occupant) bool {
	return r.cfg.WhoIs == WhoIsAnyone || (recipient != nil && recipient.role == roleModerator)
}

// userX builds <x xmlns='muc#user'> with the occupant's item and status
// codes. actor and reason go into the item (XEP-0045 §8.2, §9.1).
type itemInfo struct {
	newNick, actor, reason string
	role, aff              string // overrides ("" = the occupant's)
}

func (r *room) userX(o *occupant, showJID bool, info itemInfo, codes ...int) *xmlel.Element {
	x := xmlel.New(NSUser, "x")
	aff, role := info.aff, info.role
	if aff == "" {
		aff = r.affOf(o.bare)
	}
	if role == "" {
		role = o.role
	}
	item := xmlel.New(NSUser, "item", "affiliation", aff, "role", role)
	if showJID {
		item.Set("jid", o.current().jid.String())
	}
	item.Set("nick", info.newNick)
	if info.actor != "" {
		item.Add(xmlel.New(NSUser, "actor", "nick", info.actor))
	}
	if info.reason != "" {
		item.Add(xmlel.New(NSUser, "reason").AddText(info.reason))
	}
	x.Add(item)
	for _, c := range codes {
		x.Add(xmlel.New(NSUser, "status", "code", strconv.Itoa(c)))
	}
	return x
}

// presenceFor builds the presence of occupant o (its current presence, or
// unavailable) for the recipient session to; self adds status 110.
func (r *room) presenceFor(o *occupant, to jid.JID, recipient *occupant, unavailable bool, info itemInfo, codes ...int) *xmlel.Element {
	var p *xmlel.Element
	if unavailable {
		p = xmlel.New(server.NSClient, "presence", "type", "unavailable")
	} else {
		p = cleanPresence(o.current().pres)
	}
	p.Set("from", r.occJID(o.nick).String())
	p.Set("to", to.String())
	self := recipient == o
	if self {
		codes = append([]int{110}, codes...)
	}
	p.Add(r.userX(o, self || r.showsJIDTo(recipient), info, codes...))
	p.Add(xmlel.New(NSOccupantID, "occupant-id", "id", o.id))
	return p
}

// cleanPresence returns a copy of an occupant's presence without its
// addresses, the MUC join element, and any muc#user or occupant-id element
// the client put there (only the room may assert them, XEP-0421 §4).
func cleanPresence(p *xmlel.Element) *xmlel.Element {
	c := xmlel.New(server.NSClient, "presence")
	if p == nil {
		return c
	}
	for _, a := range p.Attr {
		switch a.Name.Local {
		case "from", "to", "type", "id":
			if a.Name.Space == "" {
				continue
			}
		}
		c.Attr = append(c.Attr, a)
	}
	for _, ch := range p.Children {
		if e, ok := ch.(*xmlel.Element); ok {
			switch e.Name.Space {
			case NS, NSUser, NSOccupantID:
				continue
			}
		}
		c.Children = append(c.Children, ch)
	}
	return c
}

// broadcastPresence sends occupant o's presence to every session in the
// room, with selfCodes added for o's own sessions and codes for everyone.
func (r *room) broadcastPresence(o *occupant, unavailable bool, info itemInfo, codes []int, selfCodes []int) {
	for _, rec := range r.sortedOccupants() {
		c := codes
		if rec == o {
			c = append(append([]int(nil), codes...), selfCodes...)
		}
		for _, s := range rec.sessions {
			r.send(r.presenceFor(o, s.jid, rec, unavailable, info, c...))
		}
	}
}

// toAllSessions sends a copy of st to every occupant session, with 'to'
// set.
func (r *room) toAllSessions(st *xmlel.Element) {
	for _, o := range r.sortedOccupants() {
		for _, s := range o.sessions {
			c := st.ShallowCopy()
			c.Set("to", s.jid.String())
			r.send(c)
		}
	}
}

// statusMessage notifies every occupant of configuration changes with the
// given status codes (XEP-0045 §10.2.1).
func (r *room) statusMessage(codes ...int) {
	if len(codes) == 0 {
		return
	}
	x := xmlel.New(NSUser, "x")
	for _, c := range codes {
		x.Add(xmlel.New(NSUser, "status", "code", strconv.Itoa(c)))
	}
	m := xmlel.New(server.NSClient, "message", "type", "groupchat", "from", r.jid.String(), "id", randomID()).Add(x)
	r.toAllSessions(m)
}

// removeOccupant takes o out of the room's tables.
func (r *room) removeOccupant(o *occupant) {
	delete(r.occ, o.key)
	for _, s := range o.sessions {
		delete(r.byJID, s.jid.String())
	}
}

// vanishIfEmpty removes a room nobody occupies any more unless it is
// persistent and configured (XEP-0045 §10.1.3: temporary rooms are
// destroyed when the last occupant leaves).
func (r *room) vanishIfEmpty(ctx context.Context) {
	if len(r.occ) > 0 || (r.cfg.Persistent && !r.locked) {
		return
	}
	r.remove(ctx)
}

// remove deletes the room from the store and the service.
func (r *room) remove(ctx context.Context) {
	if r.saved {
		if err := r.svc.s.Store().DeleteMUCRoom(ctx, r.name); err != nil {
			r.svc.s.Logger().Error("muc: deleting room failed", "room", r.name, "err", err)
		}
	}
	r.saved = false
	r.gone = true
	r.svc.forget(r)
}

// visibleTo reports whether the room exists for j: a locked room exists
// only for its owners (XEP-0045 §10.1.1).
func (r *room) visibleTo(j jid.JID) bool {
	return !r.locked || r.affOf(j) == affOwner
}
