package muc

import (
	"context"
	"sort"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// maxAdminItems bounds the items of one muc#admin request.
const maxAdminItems = 100

// adminGet returns an affiliation list (XEP-0045 §9.5, §9.8, §10.5, §10.8)
// or a role list (§8.5, §9.11): admins and owners get every affiliation
// list, and so do members of a non-anonymous members-only room (except the
// ban list: clients need the members for end-to-end encryption); only
// moderators get role lists.
func (r *room) adminGet(from jid.JID, q *xmlel.Element) (*xmlel.Element, error) {
	items := q.ChildrenNamed(NSAdmin, "item")
	if len(items) != 1 {
		return nil, server.Errorf(server.ErrBadRequest, "ask for one list with one <item/>")
	}
	it := items[0]
	aff, role := it.Get("affiliation"), it.Get("role")
	actor := r.affOf(from)
	res := xmlel.New(NSAdmin, "query")
	switch {
	case aff != "" && role == "":
		switch aff {
		case affOwner, affAdmin, affMember, affOutcast:
		default:
			return nil, server.Errorf(server.ErrBadRequest, "unknown affiliation")
		}
		membersMay := r.cfg.MembersOnly && r.cfg.WhoIs == WhoIsAnyone && actor == affMember && aff != affOutcast
		if affRank(actor) < affRank(affAdmin) && !membersMay {
			return nil, server.Errorf(server.ErrForbidden, "only admins and owners may see this list")
		}
		for _, j := range sortedKeys(r.affs) {
			a := r.affs[j]
			if a.aff != aff {
				continue
			}
			item := xmlel.New(NSAdmin, "item", "affiliation", aff, "jid", j)
			for _, o := range r.occ {
				if o.bare.String() == j {
					item.Set("nick", o.nick)
					item.Set("role", o.role)
					break
				}
			}
			if a.reason != "" {
				item.Add(xmlel.New(NSAdmin, "reason").AddText(a.reason))
			}
			res.Add(item)
		}
	case role != "" && aff == "":
		switch role {
		case roleModerator, roleParticipant, roleVisitor:
		default:
			return nil, server.Errorf(server.ErrBadRequest, "unknown role")
		}
		if o := r.byJID[from.String()]; o == nil || o.role != roleModerator {
			return nil, server.Errorf(server.ErrForbidden, "only moderators may see this list")
		}
		for _, o := range r.sortedOccupants() {
			if o.role == role {
				res.Add(xmlel.New(NSAdmin, "item", "role", role, "nick", o.nick,
					"affiliation", r.affOf(o.bare), "jid", o.current().jid.String()))
			}
		}
	default:
		return nil, server.Errorf(server.ErrBadRequest, "an <item/> with an affiliation or a role")
	}
	return res, nil
}

// change is one validated muc#admin change.
type change struct {
	target      *occupant // role change
	role        string
	bare        jid.JID // affiliation change
	aff         string
	reason      string
	actorNick   string
	isRoleEvent bool
}

// adminSet applies role changes (kick, voice, moderator: XEP-0045 §8.2,
// §8.3, §8.4, §9.6, §9.7) and affiliation changes (ban, membership, admin,
// owner: §9.1, §9.3, §9.4, §10.3, §10.6) after checking every item; any
// refused item refuses the whole request.
//
// Rules: role changes need the moderator role; nobody may take a role from
// an admin or owner (not-allowed); granting or revoking the moderator role
// needs admin. Affiliation changes need admin; an admin may not change an
// admin's or owner's affiliation nor grant admin or owner (not-allowed);
// the last owner may not step down (conflict).
func (r *room) adminSet(ctx context.Context, from jid.JID, q *xmlel.Element) (*xmlel.Element, error) {
	items := q.ChildrenNamed("", "item")
	if len(items) == 0 || len(items) > maxAdminItems {
		return nil, server.Errorf(server.ErrBadRequest, "between 1 and 100 <item/>s")
	}
	actor := r.byJID[from.String()]
	actorAff := r.affOf(from)
	actorNick := ""
	if actor != nil {
		actorNick = actor.nick
	}
	var changes []change
	owners := 0
	for _, a := range r.affs {
		if a.aff == affOwner {
			owners++
		}
	}
	for _, it := range items {
		aff, role := it.Get("affiliation"), it.Get("role")
		reason := plainText(it.ChildText("", "reason"))
		switch {
		case role != "" && aff == "":
			if actor == nil || actor.role != roleModerator {
				return nil, server.Errorf(server.ErrForbidden, "only moderators may change roles")
			}
			switch role {
			case roleNone, roleVisitor, roleParticipant, roleModerator:
			default:
				return nil, server.Errorf(server.ErrBadRequest, "unknown role")
			}
			key, err := nickKey(it.Get("nick"))
			target := r.occ[key]
			if err != nil || target == nil {
				return nil, server.Errorf(server.ErrItemNotFound, "no occupant with that nickname")
			}
			tAff := r.affOf(target.bare)
			if affRank(tAff) >= affRank(affAdmin) && role != roleModerator {
				return nil, server.Errorf(server.ErrNotAllowed, "admins and owners keep their role")
			}
			if (role == roleModerator || target.role == roleModerator) && role != target.role && affRank(actorAff) < affRank(affAdmin) {
				return nil, server.Errorf(server.ErrNotAllowed, "only admins and owners may grant or revoke the moderator role")
			}
			changes = append(changes, change{target: target, role: role, reason: reason, actorNick: actorNick, isRoleEvent: true})
		case aff != "" && role == "":
			if affRank(actorAff) < affRank(affAdmin) {
				return nil, server.Errorf(server.ErrForbidden, "only admins and owners may change affiliations")
			}
			switch aff {
			case affOwner, affAdmin, affMember, affNone, affOutcast:
			default:
				return nil, server.Errorf(server.ErrBadRequest, "unknown affiliation")
			}
			var bare jid.JID
			if s := it.Get("jid"); s != "" {
				j, err := jid.Parse(s)
				if err != nil {
					return nil, server.Errorf(server.ErrJIDMalformed, "malformed 'jid'")
				}
				bare = j.Bare()
			} else if n := it.Get("nick"); n != "" {
				key, err := nickKey(n)
				target := r.occ[key]
				if err != nil || target == nil {
					return nil, server.Errorf(server.ErrItemNotFound, "no occupant with that nickname")
				}
				bare = target.bare
			} else {
				return nil, server.Errorf(server.ErrBadRequest, "an affiliation change needs a 'jid'")
			}
			cur := affNone
			if a, ok := r.affs[bare.String()]; ok {
				cur = a.aff
			}
			if actorAff != affOwner && (affRank(cur) >= affRank(affAdmin) || affRank(aff) >= affRank(affAdmin)) {
				return nil, server.Errorf(server.ErrNotAllowed, "only owners may change admins and owners")
			}
			if cur == affOwner && aff != affOwner {
				if owners <= 1 {
					return nil, server.Errorf(errConflict, "a room needs an owner")
				}
				owners--
			}
			changes = append(changes, change{bare: bare, aff: aff, reason: reason, actorNick: actorNick})
		default:
			return nil, server.Errorf(server.ErrBadRequest, "each <item/> has either an affiliation or a role")
		}
	}
	var stored []store.MUCAffiliation
	for _, c := range changes {
		if !c.isRoleEvent {
			stored = append(stored, store.MUCAffiliation{JID: c.bare.String(), Affiliation: c.aff, Reason: c.reason})
		}
	}
	if len(stored) > 0 && r.saved {
		if err := r.svc.s.Store().SetMUCAffiliations(ctx, r.name, stored); err != nil {
			return nil, err
		}
	}
	for _, c := range changes {
		if c.isRoleEvent {
			r.setRole(ctx, c)
		} else {
			r.setAffiliation(ctx, c)
		}
	}
	return nil, nil
}

// setRole applies a validated role change.
func (r *room) setRole(ctx context.Context, c change) {
	o := c.target
	if r.occ[o.key] != o {
		return // removed by an earlier item
	}
	info := itemInfo{actor: c.actorNick, reason: c.reason}
	if c.role == roleNone {
		r.removeAll(ctx, o, info, 307)
		return
	}
	o.role = c.role
	r.broadcastPresence(o, false, info, nil, nil)
}

// setAffiliation applies a validated affiliation change to the lists and
// to the occupants with that bare JID: a ban removes them (301), losing
// membership of a members-only room removes them (321), otherwise their
// role follows the new affiliation and everyone sees it. Someone not in a
// members-only room is told by a message (status 101).
func (r *room) setAffiliation(ctx context.Context, c change) {
	key := c.bare.String()
	if c.aff == affNone {
		delete(r.affs, key)
	} else {
		r.affs[key] = affiliation{aff: c.aff, reason: c.reason}
	}
	info := itemInfo{actor: c.actorNick, reason: c.reason}
	present := false
	for _, o := range r.sortedOccupants() {
		if !o.bare.Equal(c.bare) {
			continue
		}
		present = true
		switch {
		case c.aff == affOutcast:
			r.removeAll(ctx, o, info, 301)
			continue
		case c.aff == affNone && r.cfg.MembersOnly:
			r.removeAll(ctx, o, info, 321)
			continue
		case c.aff == affOwner || c.aff == affAdmin:
			o.role = roleModerator
		case o.role == roleModerator:
			o.role = r.defaultRole(c.aff)
		case c.aff == affMember && o.role == roleVisitor:
			o.role = roleParticipant
		}
		r.broadcastPresence(o, false, info, nil, nil)
	}
	if !present && r.cfg.MembersOnly {
		item := xmlel.New(NSUser, "item", "affiliation", c.aff, "jid", key)
		if c.reason != "" {
			item.Add(xmlel.New(NSUser, "reason").AddText(c.reason))
		}
		r.send(xmlel.New(server.NSClient, "message", "from", r.jid.String(), "to", key, "id", randomID()).Add(
			xmlel.New(NSUser, "x").Add(item, xmlel.New(NSUser, "status", "code", "101"))))
	}
}

// ownerGet returns the configuration form (XEP-0045 §10.2) to an owner, or
// an affiliation list for the older muc#owner list requests.
func (r *room) ownerGet(from jid.JID, q *xmlel.Element) (*xmlel.Element, error) {
	if r.affOf(from) != affOwner {
		return nil, server.Errorf(server.ErrForbidden, "only owners may configure the room")
	}
	if q.Child("", "item") != nil {
		res, err := r.adminGet(from, renamed(q, NSAdmin))
		if res != nil {
			res = renamed(res, NSOwner)
		}
		return res, err
	}
	form := r.cfg.form()
	return xmlel.New(NSOwner, "query").Add(form), nil
}

// ownerSet applies a submitted configuration (XEP-0045 §10.2; an empty
// form accepts the current one: instant room, §10.1.2), cancels the
// creation of a locked room (§10.1.3), destroys the room (§10.9), or
// changes affiliations with the older muc#owner item requests.
func (r *room) ownerSet(ctx context.Context, from jid.JID, q *xmlel.Element) (*xmlel.Element, error) {
	if r.affOf(from) != affOwner {
		return nil, server.Errorf(server.ErrForbidden, "only owners may configure or destroy the room")
	}
	if d := q.Child(NSOwner, "destroy"); d != nil {
		alt := d.Get("jid")
		if alt != "" {
			if _, err := jid.Parse(alt); err != nil {
				return nil, server.Errorf(server.ErrJIDMalformed, "malformed alternate venue")
			}
		}
		r.destroy(ctx, alt, plainText(d.ChildText(NSOwner, "reason")), d.ChildText(NSOwner, "password"))
		return nil, nil
	}
	if x := q.Child(NSDataForm, "x"); x != nil {
		switch x.Get("type") {
		case "cancel":
			if r.locked && !r.saved {
				r.destroy(ctx, "", "", "")
			}
			return nil, nil
		case "submit":
		default:
			return nil, server.Errorf(server.ErrBadRequest, "submit the form with type 'submit' or 'cancel'")
		}
		cfg, err := r.cfg.apply(x)
		if err != nil {
			return nil, err
		}
		return nil, r.configure(ctx, cfg)
	}
	if q.Child("", "item") != nil {
		return r.adminSet(ctx, from, renamed(q, NSAdmin))
	}
	return nil, server.Errorf(server.ErrBadRequest, "expected a form, <destroy/> or items")
}

// configure makes cfg the room's configuration, unlocks and stores the
// room, and tells the occupants what changed (XEP-0045 §10.2.1: 104, and
// 170/171 for archiving, 172/173 for anonymity); non-members leave a room
// that became members-only (322).
func (r *room) configure(ctx context.Context, cfg RoomConfig) error {
	old, wasLocked, wasSaved := r.cfg, r.locked, r.saved
	r.cfg, r.locked = cfg, false
	if err := r.save(ctx); err != nil {
		r.cfg, r.locked, r.saved = old, wasLocked, wasSaved
		return err
	}
	if wasLocked {
		return nil
	}
	codes := []int{104}
	if cfg.Archived != old.Archived {
		codes = append(codes, map[bool]int{true: 170, false: 171}[cfg.Archived])
	}
	if cfg.WhoIs != old.WhoIs {
		codes = append(codes, map[bool]int{true: 172, false: 173}[cfg.WhoIs == WhoIsAnyone])
	}
	r.statusMessage(codes...)
	if cfg.MembersOnly && !old.MembersOnly {
		for _, o := range r.sortedOccupants() {
			if affRank(r.affOf(o.bare)) < affRank(affMember) {
				r.removeAll(ctx, o, itemInfo{}, 322)
			}
		}
	}
	if !r.gone {
		r.vanishIfEmpty(ctx)
	}
	return nil
}

// destroy ends the room (XEP-0045 §10.9): every occupant gets unavailable
// presence with <destroy/> (the alternate venue and reason), and the room,
// its affiliations and archive are deleted.
func (r *room) destroy(ctx context.Context, alt, reason, password string) {
	d := xmlel.New(NSUser, "destroy")
	d.Set("jid", alt)
	if reason != "" {
		d.Add(xmlel.New(NSUser, "reason").AddText(reason))
	}
	if password != "" {
		d.Add(xmlel.New(NSUser, "password").AddText(password))
	}
	for _, o := range r.sortedOccupants() {
		for _, s := range o.sessions {
			x := xmlel.New(NSUser, "x").Add(xmlel.New(NSUser, "item", "affiliation", affNone, "role", roleNone), d)
			r.send(xmlel.New(server.NSClient, "presence", "type", "unavailable",
				"from", r.occJID(o.nick).String(), "to", s.jid.String()).Add(x,
				xmlel.New(NSOccupantID, "occupant-id", "id", o.id)))
		}
		r.removeOccupant(o)
	}
	r.remove(ctx)
}

// renamed returns a copy of q and its children moved to namespace ns
// (muc#owner item lists answered by the muc#admin code).
func renamed(q *xmlel.Element, ns string) *xmlel.Element {
	c := q.Copy()
	var walk func(e *xmlel.Element, from string)
	walk = func(e *xmlel.Element, from string) {
		if e.Name.Space == from {
			e.Name.Space = ns
		}
		for _, ch := range e.Elements() {
			walk(ch, from)
		}
	}
	walk(c, q.Name.Space)
	return c
}

// sortedKeys returns the keys of the affiliation table in order.
func sortedKeys(m map[string]affiliation) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
