package muc

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Stanza errors with XEP-0045's conditions (§7.2, §19.1 error codes).
var (
	errRegistrationRequired = &server.StanzaError{Type: stanza.Auth, Condition: stanza.RegistrationRequired}
	errConflict             = &server.StanzaError{Type: stanza.Cancel, Condition: stanza.Conflict}
	errNotAuthorized        = &server.StanzaError{Type: stanza.Auth, Condition: stanza.NotAuthorized}
	errFull                 = &server.StanzaError{Type: stanza.Wait, Condition: stanza.ServiceUnavailable}
)

// ghostConditions are the error conditions that show a session is gone, so
// an error from an occupant's session removes it (like Prosody).
var ghostConditions = map[string]bool{
	"gone": true, "internal-server-error": true, "item-not-found": true, "jid-malformed": true,
	"recipient-unavailable": true, "redirect": true, "remote-server-not-found": true,
	"remote-server-timeout": true, "service-unavailable": true,
}

// handlePresence handles presence to a room or occupant JID: entering
// (XEP-0045 §7.2), presence changes (§7.7), nickname changes (§7.6),
// leaving (§7.14) and errors from occupants' sessions.
func (svc *Service) handlePresence(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	typ := st.Get("type")
	switch typ {
	case "error":
		if r := svc.lockRoom(to.Localpart()); r != nil {
			r.ghost(ctx, st, from)
			r.flush(ctx)
		}
		return
	case "", "unavailable":
	default:
		return // subscriptions and probes mean nothing to a room
	}
	if typ == "unavailable" {
		if r := svc.lockRoom(to.Localpart()); r != nil {
			if o := r.byJID[from.String()]; o != nil {
				r.leave(ctx, o, from, st)
			}
			r.flush(ctx)
		}
		return
	}
	nick := to.Resourcepart()
	key, err := nickKey(nick)
	if err != nil {
		// XEP-0045 §7.2.1: a room JID without a nickname, or a nickname
		// the service does not allow.
		svc.reply(ctx, st, server.Errorf(server.ErrJIDMalformed, "a valid room nickname is required"))
		return
	}
	r := svc.lockRoom(to.Localpart())
	if r == nil {
		if r = svc.create(ctx, st, from, to); r == nil {
			return
		}
	}
	r.presence(ctx, st, from, nick, key)
	r.flush(ctx)
}

// create makes a new room for a local account entering it (XEP-0045
// §10.1.1) and returns it locked, or nil after answering the request.
func (svc *Service) create(ctx context.Context, st *xmlel.Element, from, to jid.JID) *room {
	if !svc.s.IsLocal(from) || from.Localpart() == "" {
		svc.reply(ctx, st, server.Errorf(server.ErrNotAllowed, "only accounts of this server may create rooms"))
		return nil
	}
	svc.mu.Lock()
	if svc.rooms[to.Localpart()] != nil {
		// Created by someone else meanwhile.
		svc.mu.Unlock()
		if r := svc.lockRoom(to.Localpart()); r != nil {
			return r
		}
		svc.reply(ctx, st, server.Errorf(server.ErrResourceConstraint, "the room is changing; try again"))
		return nil
	}
	r := svc.newRoom(to.Localpart(), svc.defaults)
	r.affs[from.Bare().String()] = affiliation{aff: affOwner}
	r.locked = true
	r.mu.Lock()
	svc.rooms[r.name] = r
	svc.mu.Unlock()
	return r
}

// presence handles available presence from the real JID from to the
// nickname nick (compare key key).
func (r *room) presence(ctx context.Context, st *xmlel.Element, from jid.JID, nick, key string) {
	if o := r.byJID[from.String()]; o != nil {
		if o.key == key && o.nick == nick {
			if x := st.Child(NS, "x"); x != nil {
				r.rejoin(ctx, o, from, st, x)
				return
			}
			r.update(o, from, st)
			return
		}
		r.changeNick(ctx, o, from, st, nick, key)
		return
	}
	r.join(ctx, st, from, nick, key)
}

// join admits the real full JID from under nick (XEP-0045 §7.2) or
// answers with the error presence.
func (r *room) join(ctx context.Context, st *xmlel.Element, from jid.JID, nick, key string) {
	aff := r.affOf(from)
	created := r.locked && len(r.occ) == 0 && aff == affOwner && !r.saved
	switch {
	case !r.visibleTo(from):
		r.fail(st, server.Errorf(server.ErrItemNotFound, "the room is being created"))
		return
	case aff == affOutcast:
		r.fail(st, server.Errorf(server.ErrForbidden, "you are banned from this room"))
		return
	case r.cfg.MembersOnly && affRank(aff) < affRank(affMember):
		r.fail(st, server.Errorf(errRegistrationRequired, "this room is for members only"))
		return
	}
	x := st.Child(NS, "x")
	if r.cfg.Password != "" && !created {
		if x == nil || x.ChildText(NS, "password") != r.cfg.Password {
			r.fail(st, server.Errorf(errNotAuthorized, "a password is needed to enter this room"))
			return
		}
	}
	o := r.occ[key]
	if o != nil && (!o.bare.Equal(from.Bare()) || o.nick != nick) {
		r.fail(st, server.Errorf(errConflict, "that nickname is in use"))
		return
	}
	if o == nil && r.cfg.MaxUsers > 0 && len(r.occ) >= r.cfg.MaxUsers && affRank(aff) < affRank(affAdmin) {
		r.fail(st, server.Errorf(errFull, "the room is full"))
		return
	}
	if created && r.svc.opts.NoLocking {
		r.locked = false
		if err := r.save(ctx); err != nil {
			r.svc.s.Logger().Error("muc: saving a new room failed", "room", r.name, "err", err)
			r.fail(st, server.ErrInternal)
			r.remove(ctx)
			return
		}
	}
	sess := &occSession{jid: from, pres: st}
	if o != nil {
		// Another session of the same person under the same nickname.
		o.sessions = append(o.sessions, sess)
		r.byJID[from.String()] = o
		for _, other := range r.sortedOccupants() {
			if other != o {
				r.send(r.presenceFor(other, from, o, false, itemInfo{}))
			}
		}
		r.send(r.presenceFor(o, from, o, false, itemInfo{}, r.joinCodes(false)...))
		r.afterJoin(ctx, from, x)
		return
	}
	o = &occupant{
		nick: nick, key: key, bare: from.Bare(), role: r.defaultRole(aff),
		id: r.svc.occupantID(r.jid.String(), from.Bare().String()), sessions: []*occSession{sess},
	}
	// XEP-0045 §7.2.3: the existing occupants' presence to the newcomer,
	// the newcomer's to everyone, its own (status 110) last.
	for _, other := range r.sortedOccupants() {
		r.send(r.presenceFor(other, from, o, false, itemInfo{}))
	}
	r.occ[key] = o
	r.byJID[from.String()] = o
	for _, other := range r.sortedOccupants() {
		if other == o {
			continue
		}
		for _, s := range other.sessions {
			r.send(r.presenceFor(o, s.jid, other, false, itemInfo{}))
		}
	}
	r.send(r.presenceFor(o, from, o, false, itemInfo{}, r.joinCodes(created)...))
	r.afterJoin(ctx, from, x)
}

// joinCodes returns the status codes of the self-presence on entering
// (XEP-0045 §7.2.3, §7.2.12, §10.1.1).
func (r *room) joinCodes(created bool) []int {
	var c []int
	if r.cfg.WhoIs == WhoIsAnyone {
		c = append(c, 100)
	}
	if r.cfg.Archived {
		c = append(c, 170)
	}
	if created {
		c = append(c, 201)
	}
	return c
}

// afterJoin sends a new session the room avatar hash, the history and the
// subject (XEP-0045 §7.2.15, §7.2.16).
func (r *room) afterJoin(ctx context.Context, to jid.JID, x *xmlel.Element) {
	if r.photo != "" {
		r.send(r.avatarPresence(to))
	}
	r.sendHistory(ctx, to, x)
	subj := xmlel.New(server.NSClient, "message", "type", "groupchat", "id", randomID(), "to", to.String())
	if r.subject.nick != "" {
		subj.Set("from", r.occJID(r.subject.nick).String())
	} else {
		subj.Set("from", r.jid.String())
	}
	subj.Add(xmlel.New(server.NSClient, "subject").AddText(r.subject.text))
	if !r.subject.at.IsZero() {
		subj.Add(xmlel.New(NSDelay, "delay", "from", r.jid.String(), "stamp", stamp(r.subject.at)))
	}
	r.send(subj)
}

// avatarPresence is the room's presence carrying its avatar hash
// (XEP-0153 §3.2 on the room JID, as Prosody's mod_vcard_muc sends it).
func (r *room) avatarPresence(to jid.JID) *xmlel.Element {
	return xmlel.New(server.NSClient, "presence", "from", r.jid.String(), "to", to.String()).Add(
		xmlel.New(NSVCardUpdate, "x").Add(xmlel.New(NSVCardUpdate, "photo").AddText(r.photo)))
}

// sendHistory sends the recent messages a joining session asked for with
// <history/> (XEP-0045 §7.2.15): at most maxstanzas messages, at most
// maxchars characters of XML, none older than seconds or since; without
// it, the service's default number.
func (r *room) sendHistory(ctx context.Context, to jid.JID, x *xmlel.Element) {
	limit := r.svc.history
	maxChars := -1
	var since time.Time
	if x != nil {
		if h := x.Child(NS, "history"); h != nil {
			if v, err := strconv.Atoi(h.Get("maxstanzas")); err == nil && v >= 0 {
				limit = min(limit, v)
			}
			if v, err := strconv.Atoi(h.Get("maxchars")); err == nil && v >= 0 {
				maxChars = v
			}
			if v, err := strconv.Atoi(h.Get("seconds")); err == nil && v >= 0 {
				since = r.svc.s.Now().Add(-time.Duration(v) * time.Second)
			}
			if v := h.Get("since"); v != "" {
				if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.After(since) {
					since = t
				}
			}
		}
	}
	if limit <= 0 || maxChars == 0 {
		return
	}
	r.loadHistory(ctx)
	start := len(r.history)
	chars := 0
	for start > 0 && len(r.history)-start < limit {
		e := r.history[start-1]
		if !since.IsZero() && e.at.Before(since) {
			break
		}
		if maxChars > 0 && chars+e.chars > maxChars {
			break
		}
		chars += e.chars
		start--
	}
	for _, e := range r.history[start:] {
		m := e.msg.ShallowCopy()
		m.Set("to", to.String())
		m.Add(xmlel.New(NSDelay, "delay", "from", r.jid.String(), "stamp", stamp(e.at)))
		r.send(m)
	}
}

// rejoin handles an entry request (presence with the MUC <x/>) from a
// session that is already an occupant under that nickname, as Prosody does:
// a client that reconnected with the same full JID before the room saw it
// leave gets the occupant list, its self-presence, the history and the
// subject again instead of a silent presence update.
func (r *room) rejoin(ctx context.Context, o *occupant, from jid.JID, st, x *xmlel.Element) {
	r.session(o, from).pres = st
	for _, other := range r.sortedOccupants() {
		if other != o {
			r.send(r.presenceFor(other, from, o, false, itemInfo{}))
		}
	}
	for _, rec := range r.sortedOccupants() {
		if rec == o {
			continue
		}
		for _, s := range rec.sessions {
			r.send(r.presenceFor(o, s.jid, rec, false, itemInfo{}))
		}
	}
	r.send(r.presenceFor(o, from, o, false, itemInfo{}, r.joinCodes(false)...))
	r.afterJoin(ctx, from, x)
}

// update handles a presence change of a joined session (XEP-0045 §7.7):
// everyone gets the occupant's new presence.
func (r *room) update(o *occupant, from jid.JID, st *xmlel.Element) {
	s := r.session(o, from)
	s.pres = st
	// The changed session becomes the one that represents the occupant.
	for i, x := range o.sessions {
		if x == s {
			o.sessions = append(append(o.sessions[:i:i], o.sessions[i+1:]...), s)
			break
		}
	}
	r.broadcastPresence(o, false, itemInfo{}, nil, nil)
}

// changeNick handles a joined session's presence to another nickname
// (XEP-0045 §7.6): unavailable with 303 from the old nickname, then the
// presence from the new one.
func (r *room) changeNick(ctx context.Context, o *occupant, from jid.JID, st *xmlel.Element, nick, key string) {
	if other := r.occ[key]; other != nil && other != o {
		r.fail(st, server.Errorf(errConflict, "that nickname is in use"))
		return
	}
	if len(o.sessions) > 1 {
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "leave with your other sessions before changing your nickname"))
		return
	}
	r.broadcastPresence(o, true, itemInfo{newNick: nick, role: o.role}, []int{303}, nil)
	delete(r.occ, o.key)
	o.nick, o.key = nick, key
	o.current().pres = st
	r.occ[key] = o
	r.broadcastPresence(o, false, itemInfo{}, nil, nil)
}

// leave handles unavailable presence from an occupant's session (XEP-0045
// §7.14). The last session takes the occupant out of the room.
func (r *room) leave(ctx context.Context, o *occupant, from jid.JID, st *xmlel.Element) {
	status := ""
	if st != nil {
		status = st.ChildText("", "status")
	}
	r.dropSession(ctx, o, from, status, itemInfo{role: roleNone})
}

// dropSession removes one session of o; with its last session o leaves and
// everyone gets its unavailable presence with codes.
func (r *room) dropSession(ctx context.Context, o *occupant, from jid.JID, status string, info itemInfo, codes ...int) {
	unavail := func(to jid.JID, recipient *occupant, codes ...int) *xmlel.Element {
		p := r.presenceFor(o, to, recipient, true, info, codes...)
		if status != "" {
			p.Add(xmlel.New(server.NSClient, "status").AddText(status))
		}
		return p
	}
	if len(o.sessions) > 1 {
		for i, s := range o.sessions {
			if s.jid.Equal(from) {
				o.sessions = append(o.sessions[:i:i], o.sessions[i+1:]...)
				break
			}
		}
		delete(r.byJID, from.String())
		r.send(unavail(from, o, codes...))
		return
	}
	for _, rec := range r.sortedOccupants() {
		for _, s := range rec.sessions {
			r.send(unavail(s.jid, rec, codes...))
		}
	}
	r.removeOccupant(o)
	r.vanishIfEmpty(ctx)
}

// removeAll takes every session of o out of the room (kick, ban, loss of
// membership) with the given item and codes (XEP-0045 §8.2, §9.1, §9.4).
func (r *room) removeAll(ctx context.Context, o *occupant, info itemInfo, codes ...int) {
	info.role = roleNone
	for _, rec := range r.sortedOccupants() {
		for _, s := range rec.sessions {
			r.send(r.presenceFor(o, s.jid, rec, true, info, codes...))
		}
	}
	r.removeOccupant(o)
	r.vanishIfEmpty(ctx)
}

// ghost handles an error stanza from a real JID: a session whose error
// shows it is gone leaves the room (status 333, XEP-0045 §7.14).
func (r *room) ghost(ctx context.Context, st *xmlel.Element, from jid.JID) {
	o := r.byJID[from.String()]
	if o == nil {
		return
	}
	cond := ""
	if e := st.Child("", "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Name.Space == nsStanzas && c.Name.Local != "text" {
				cond = c.Name.Local
				break
			}
		}
	}
	if cond != "" && !ghostConditions[cond] {
		return
	}
	r.dropSession(ctx, o, from, "", itemInfo{role: roleNone}, 333)
}

// plainText returns s without leading and trailing space.
func plainText(s string) string { return strings.TrimSpace(s) }
