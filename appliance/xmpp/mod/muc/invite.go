package muc

import (
	"context"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// maxInvites bounds the invitations of one message.
const maxInvites = 20

// invite relays mediated invitations (XEP-0045 §7.8.2). The inviter must be
// an occupant or hold an affiliation; unless it is a moderator, admin or
// owner, the room must allow invitations (muc#roomconfig_allowinvites, else
// forbidden). In a members-only room the invitee becomes a member. Banned
// invitees are skipped.
func (r *room) invite(ctx context.Context, st *xmlel.Element, from jid.JID, x *xmlel.Element) {
	o := r.byJID[from.String()]
	aff := r.affOf(from)
	if o == nil && affRank(aff) < affRank(affMember) {
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "only occupants may invite"))
		return
	}
	privileged := affRank(aff) >= affRank(affAdmin) || (o != nil && o.role == roleModerator)
	if !r.cfg.AllowInvites && !privileged {
		r.fail(st, server.Errorf(server.ErrForbidden, "only moderators may invite to this room"))
		return
	}
	invites := x.ChildrenNamed(NSUser, "invite")
	if len(invites) > maxInvites {
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "too many invitations in one message"))
		return
	}
	targets := make([]jid.JID, len(invites))
	for i, inv := range invites {
		t, err := jid.Parse(inv.Get("to"))
		if err != nil || inv.Get("to") == "" {
			r.fail(st, server.Errorf(server.ErrJIDMalformed, "an invitation needs a valid 'to'"))
			return
		}
		targets[i] = t
	}
	inviter := from.Bare().String()
	if r.cfg.WhoIs != WhoIsAnyone && o != nil {
		inviter = r.occJID(o.nick).String()
	}
	var grants []store.MUCAffiliation
	for i, inv := range invites {
		t := targets[i]
		switch r.affOf(t) {
		case affOutcast:
			continue
		case affNone:
			if r.cfg.MembersOnly {
				r.affs[t.Bare().String()] = affiliation{aff: affMember}
				grants = append(grants, store.MUCAffiliation{JID: t.Bare().String(), Affiliation: affMember})
			}
		}
		ix := xmlel.New(NSUser, "x")
		in := xmlel.New(NSUser, "invite", "from", inviter)
		reason := inv.ChildText(NSUser, "reason")
		if reason != "" {
			in.Add(xmlel.New(NSUser, "reason").AddText(reason))
		}
		ix.Add(in)
		if r.cfg.Password != "" {
			ix.Add(xmlel.New(NSUser, "password").AddText(r.cfg.Password))
		}
		body := from.Bare().String() + " invites you to the room " + r.jid.String()
		if reason != "" {
			body += ": " + reason
		}
		r.send(xmlel.New(server.NSClient, "message", "from", r.jid.String(), "to", t.String(), "id", randomID()).
			Add(ix, xmlel.New(server.NSClient, "body").AddText(body)))
	}
	if len(grants) > 0 && r.saved {
		if err := r.svc.s.Store().SetMUCAffiliations(ctx, r.name, grants); err != nil {
			r.svc.s.Logger().Error("muc: storing invited members failed", "room", r.name, "err", err)
		}
	}
}

// decline relays an invitee's refusal to the inviter (XEP-0045 §7.8.2.1).
func (r *room) decline(st *xmlel.Element, from jid.JID, d *xmlel.Element) {
	to, err := jid.Parse(d.Get("to"))
	if err != nil || d.Get("to") == "" {
		r.fail(st, server.Errorf(server.ErrJIDMalformed, "a decline needs a valid 'to'"))
		return
	}
	dx := xmlel.New(NSUser, "decline", "from", from.Bare().String())
	if reason := d.ChildText(NSUser, "reason"); reason != "" {
		dx.Add(xmlel.New(NSUser, "reason").AddText(reason))
	}
	r.send(xmlel.New(server.NSClient, "message", "from", r.jid.String(), "to", to.String(), "id", randomID()).
		Add(xmlel.New(NSUser, "x").Add(dx)))
}

// voiceForm handles the muc#request form (XEP-0045 §7.13, §8.6): from a
// visitor it is a request for voice, sent on to the moderators; from a
// moderator, with muc#request_allow, the approval that gives the named
// occupant the participant role.
func (r *room) voiceForm(ctx context.Context, st *xmlel.Element, from jid.JID, x *xmlel.Element) {
	o := r.byJID[from.String()]
	if o == nil {
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "only occupants may request voice"))
		return
	}
	v := formValues(x)
	if allow, ok := v["muc#request_allow"]; ok && o.role == roleModerator {
		yes, err := parseBool(allow)
		if err != nil {
			r.fail(st, server.Errorf(server.ErrBadRequest, "muc#request_allow must be a boolean"))
			return
		}
		key, err := nickKey(v["muc#roomnick"])
		target := r.occ[key]
		if err != nil || target == nil {
			r.fail(st, server.Errorf(server.ErrItemNotFound, "no such occupant"))
			return
		}
		if yes && target.role == roleVisitor {
			target.role = roleParticipant
			r.broadcastPresence(target, false, itemInfo{actor: o.nick}, nil, nil)
		}
		return
	}
	if role := v["muc#role"]; role != "" && role != roleParticipant {
		r.fail(st, server.Errorf(server.ErrBadRequest, "only the participant role can be requested"))
		return
	}
	if o.role != roleVisitor {
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "you have voice already"))
		return
	}
	form := xmlel.New(NSDataForm, "x", "type", "form").Add(
		xmlel.New(NSDataForm, "title").AddText("Voice request"),
		xmlel.New(NSDataForm, "instructions").AddText("To approve this request for voice, select the \"Grant voice to this person?\" checkbox and click OK. To skip this request, click the cancel button."),
		hiddenField("FORM_TYPE", NSRequest),
		withOptions(field("list-single", "muc#role", "Requested role", roleParticipant), roleParticipant, "Participant"),
		field("jid-single", "muc#jid", "User ID", from.String()),
		field("text-single", "muc#roomnick", "Room Nickname", o.nick),
		field("boolean", "muc#request_allow", "Grant voice to this person?", "0"),
	)
	for _, mod := range r.sortedOccupants() {
		if mod.role != roleModerator {
			continue
		}
		for _, s := range mod.sessions {
			m := xmlel.New(server.NSClient, "message", "from", r.jid.String(), "to", s.jid.String(), "id", randomID()).Add(
				xmlel.New(server.NSClient, "body").AddText(o.nick+" asks for voice in "+r.jid.String()), form)
			r.send(m)
		}
	}
}
