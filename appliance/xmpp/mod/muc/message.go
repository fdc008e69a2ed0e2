package muc

import (
	"context"
	"errors"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// handleMessage handles a message to a room or occupant JID: groupchat
// messages and subject changes (XEP-0045 §7.4, §8.1), private messages
// (§7.5), invitations and declines (§7.8.2, §7.8.2.1), voice requests and
// their approval (§7.13, §8.6), and errors from occupants' sessions.
func (svc *Service) handleMessage(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	typ := st.Get("type")
	r := svc.lockRoom(to.Localpart())
	if typ == "error" {
		if r != nil {
			r.ghost(ctx, st, from)
			r.flush(ctx)
		}
		return
	}
	if r == nil {
		svc.reply(ctx, st, server.Errorf(server.ErrItemNotFound, "no such room"))
		return
	}
	defer r.flush(ctx)
	if !r.visibleTo(from) {
		r.fail(st, server.Errorf(server.ErrItemNotFound, "no such room"))
		return
	}
	if to.Resourcepart() != "" {
		r.private(st, from, to.Resourcepart())
		return
	}
	if typ == "groupchat" {
		r.groupchat(ctx, st, from)
		return
	}
	if x := st.Child(NSUser, "x"); x != nil {
		if x.Child(NSUser, "invite") != nil {
			r.invite(ctx, st, from, x)
			return
		}
		if d := x.Child(NSUser, "decline"); d != nil {
			r.decline(st, from, d)
			return
		}
	}
	for _, x := range st.ChildrenNamed(NSDataForm, "x") {
		if formValues(x)["FORM_TYPE"] == NSRequest {
			r.voiceForm(ctx, st, from, x)
			return
		}
	}
	r.fail(st, server.Errorf(server.ErrBadRequest, "messages to the room must be of type groupchat"))
}

// groupchat broadcasts an occupant's message to every occupant with a
// XEP-0359 stanza-id and a XEP-0421 occupant-id, after archiving it, or
// changes the subject (a message with <subject/> and no <body/>, XEP-0045
// §8.1).
func (r *room) groupchat(ctx context.Context, st *xmlel.Element, from jid.JID) {
	o := r.byJID[from.String()]
	switch {
	case o == nil:
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "only occupants may send messages to the room"))
		return
	case roleRank(o.role) < roleRank(roleParticipant):
		r.fail(st, server.Errorf(server.ErrForbidden, "you need voice to speak in this room"))
		return
	}
	msg := r.stamped(st, o)
	if subj := st.Child("", "subject"); subj != nil && st.Child("", "body") == nil {
		if !r.cfg.ChangeSubject && o.role != roleModerator {
			r.fail(st, server.Errorf(server.ErrForbidden, "only moderators may change the subject"))
			return
		}
		r.subject.text, r.subject.nick, r.subject.at = subj.Text(), o.nick, r.svc.s.Now()
		r.saveOrLog(ctx)
		r.toAllSessions(msg)
		return
	}
	if worthKeeping(st) {
		r.loadHistory(ctx) // the history before this message, after a restart
		now := r.svc.s.Now()
		id := ""
		if r.cfg.Archived && r.saved && !hinted(st, "no-permanent-store") {
			e, err := r.svc.s.Store().AppendMUCArchive(ctx, r.name, store.ArchiveEntry{
				With: o.bare.String(), WithResource: o.nick, Stamp: now, Stanza: []byte(msg.String()),
			})
			if err != nil {
				r.svc.s.Logger().Error("muc: archiving failed", "room", r.name, "err", err)
				r.fail(st, server.ErrInternal)
				return
			}
			id = e.ID
		} else {
			id = randomID()
		}
		msg.Add(xmlel.New(NSStanzaID, "stanza-id", "id", id, "by", r.jid.String()))
		r.remember(msg, now)
	}
	r.toAllSessions(msg)
}

// stamped returns the copy of an occupant's message the room sends: from
// the occupant JID, without 'to', with its occupant-id, without any
// stanza-id or occupant-id the sender put in on the room's behalf
// (XEP-0359 §4, XEP-0421 §4).
func (r *room) stamped(st *xmlel.Element, o *occupant) *xmlel.Element {
	msg := st.ShallowCopy()
	msg.Name.Space = server.NSClient
	msg.Set("to", "")
	msg.Set("from", r.occJID(o.nick).String())
	msg.RemoveChildren(func(c *xmlel.Element) bool {
		switch {
		case c.Name.Space == NSOccupantID:
			return true
		case c.Name.Space == NSStanzaID && c.Name.Local == "stanza-id":
			by, err := jid.Parse(c.Get("by"))
			return err != nil || by.Equal(r.jid)
		case c.Name.Space == NSDelay:
			return true // only the room stamps delays in history
		}
		return false
	})
	if msg.Get("id") == "" {
		msg.Set("id", randomID())
	}
	return msg.Add(xmlel.New(NSOccupantID, "occupant-id", "id", o.id))
}

// worthKeeping reports whether a groupchat message belongs in the history
// and archive: it has content other than chat states (XEP-0085) and no
// no-store hint (XEP-0334).
func worthKeeping(st *xmlel.Element) bool {
	worth := false
	for _, c := range st.Elements() {
		switch c.Name.Space {
		case NSChatStates:
			continue
		case NSHints:
			if c.Name.Local == "no-store" {
				return false
			}
			continue
		}
		worth = true
	}
	return worth
}

// hinted reports whether st carries the XEP-0334 hint name.
func hinted(st *xmlel.Element, name string) bool { return st.Child(NSHints, name) != nil }

// remember appends a broadcast message to the join history (loaded from
// the archive before the message was archived, see groupchat).
func (r *room) remember(msg *xmlel.Element, at time.Time) {
	if r.svc.history <= 0 {
		return
	}
	r.history = append(r.history, histEntry{msg: msg, at: at, chars: len(msg.String())})
	if n := len(r.history) - r.svc.history; n > 0 {
		r.history = append(r.history[:0:0], r.history[n:]...)
	}
}

// loadHistory fills the join history from the archive after a restart.
func (r *room) loadHistory(ctx context.Context) {
	if r.histReady {
		return
	}
	r.histReady = true
	if !r.saved || r.svc.history <= 0 {
		return
	}
	page, err := r.svc.s.Store().QueryMUCArchive(ctx, r.name, store.ArchiveQuery{Last: true, Max: r.svc.history})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.svc.s.Logger().Error("muc: reading history failed", "room", r.name, "err", err)
		}
		return
	}
	for _, e := range page.Entries {
		el, err := xmlel.Parse(string(e.Stanza))
		if err != nil {
			continue
		}
		el.Add(xmlel.New(NSStanzaID, "stanza-id", "id", e.ID, "by", r.jid.String()))
		r.history = append(r.history, histEntry{msg: el, at: e.Stamp, chars: len(el.String())})
	}
}

// private relays a private message between occupants (XEP-0045 §7.5),
// with <x xmlns='muc#user'/> and the sender's occupant-id, to every session
// of the recipient.
func (r *room) private(st *xmlel.Element, from jid.JID, nick string) {
	o := r.byJID[from.String()]
	if st.Get("type") == "groupchat" {
		r.fail(st, server.Errorf(server.ErrBadRequest, "private messages cannot be of type groupchat"))
		return
	}
	if o == nil {
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "only occupants may send private messages"))
		return
	}
	key, err := nickKey(nick)
	target := r.occ[key]
	if err != nil || target == nil {
		r.fail(st, server.Errorf(server.ErrItemNotFound, "no such occupant"))
		return
	}
	if !r.pmAllowed(o) {
		r.fail(st, server.Errorf(server.ErrForbidden, "private messages are not allowed in this room"))
		return
	}
	msg := r.stamped(st, o)
	if msg.Child(NSUser, "x") == nil {
		msg.Add(xmlel.New(NSUser, "x"))
	}
	for _, s := range target.sessions {
		c := msg.ShallowCopy()
		c.Set("to", s.jid.String())
		r.send(c)
	}
}

// pmAllowed applies muc#roomconfig_allowpm to the sender.
func (r *room) pmAllowed(o *occupant) bool {
	switch r.cfg.AllowPM {
	case PMAnyone:
		return true
	case PMParticipants:
		return roleRank(o.role) >= roleRank(roleParticipant)
	case PMModerators:
		return o.role == roleModerator
	}
	return false
}
