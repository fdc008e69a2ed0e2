package mam

import (
	"context"
	"errors"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// content lists the payloads besides <body/> that make a message worth
// archiving (XEP-0313 §6.1.1 "other elements used to supplement
// conversations"): encrypted bodies, and conversation actions that clients
// replay from the archive.
var content = map[[2]string]bool{
	{"eu.siacs.conversations.axolotl", "encrypted"}: true, // XEP-0384 OMEMO (legacy)
	{"urn:xmpp:omemo:2", "encrypted"}:               true, // XEP-0384 OMEMO
	{"urn:xmpp:openpgp:0", "openpgp"}:               true, // XEP-0373 OpenPGP
	{"urn:xmpp:reactions:0", "reactions"}:           true, // XEP-0444
	{"urn:xmpp:message-correct:0", "replace"}:       true, // XEP-0308
	{"urn:xmpp:message-retract:1", "retract"}:       true, // XEP-0424
	{"urn:xmpp:jingle-message:0", "propose"}:        true, // XEP-0353 call signalling
	{"urn:xmpp:jingle-message:0", "retract"}:        true,
	{"urn:xmpp:jingle-message:0", "accept"}:         true,
	{"urn:xmpp:jingle-message:0", "reject"}:         true,
	{"urn:xmpp:jingle-message:0", "proceed"}:        true,
	{"urn:xmpp:jingle-message:0", "finish"}:         true,
	{"urn:xmpp:chat-markers:0", "displayed"}:        true, // XEP-0333 read state sync
}

// wrappers are elements marking a message as a copy of another one, which is
// archived where it originated, never again as the copy.
var wrappers = map[[2]string]bool{
	{"urn:xmpp:carbons:2", "sent"}:     true, // XEP-0280
	{"urn:xmpp:carbons:2", "received"}: true,
	{NS, "result"}:                     true, // XEP-0313 results
	{NSv1, "result"}:                   true,
}

// archivable reports whether the message st of type typ belongs in a user
// archive (XEP-0313 §6.1.1, XEP-0334 §4): never errors, groupchat messages
// (they belong to the room's archive, XEP-0313 §5.1.2, even with a store
// hint copied from their sender), copies or messages hinted
// no-store/no-permanent-store; always with the store hint; otherwise chat
// and normal messages with a body or other content (see content).
func archivable(st *xmlel.Element, typ string) bool {
	if typ == "error" || typ == "groupchat" {
		return false
	}
	hinted, body := false, false
	for _, c := range st.Elements() {
		key := [2]string{c.Name.Space, c.Name.Local}
		switch {
		case c.Name.Space == NSHints:
			switch c.Name.Local {
			case "no-store", "no-permanent-store":
				return false
			case "store":
				hinted = true
			}
		case wrappers[key]:
			return false
		case content[key], key == [2]string{server.NSClient, "body"}:
			body = true
		}
	}
	if hinted {
		return true
	}
	switch typ {
	case "groupchat", "headline":
		return false
	}
	return body
}

// archiveOut archives a message sent by a local session in the sender's
// archive (XEP-0313 §3, outgoing). The routed stanza is not changed: its
// recipient may not read the sender's archive (XEP-0313 §3.5).
func (a *Archive) archiveOut(ctx context.Context, m *server.Message) bool {
	if m.Sender == nil || !a.s.IsLocal(m.From) || m.From.Localpart() == "" {
		return false
	}
	if m.To.Bare().Equal(m.From.Bare()) {
		return false // archived once, by archiveIn
	}
	if !archivable(m.Stanza, m.Type) {
		return false
	}
	user := m.From.Bare()
	stored := m.Stanza.ShallowCopy()
	stripStanzaIDs(stored, user)
	if e, ok := a.append(ctx, user, m.To, true, stored); ok {
		m.ArchiveID = e.ID // for the sender's own copies (sent carbons)
	}
	return false
}

// archiveIn archives a message for a local account in its archive
// (XEP-0313 §3, incoming) and marks the delivered stanza with the archive id
// (XEP-0313 §3.5, XEP-0359 §4). Any stanza-id claiming to be from this
// archive is removed first, archived or not (XEP-0359 §4 rules 3-4).
func (a *Archive) archiveIn(ctx context.Context, m *server.Message) bool {
	user := m.To.Bare()
	if user.Localpart() == "" {
		return false
	}
	stripStanzaIDs(m.Stanza, user)
	if !archivable(m.Stanza, m.Type) {
		return false
	}
	from := m.From
	if from.String() == "" {
		from = a.s.Domain() // a server-generated message without 'from'
	}
	if e, ok := a.append(ctx, user, from, false, m.Stanza); ok {
		m.Stanza.Add(xmlel.New(NSStanzaID, "stanza-id", "id", e.ID, "by", user.String()))
	}
	return false
}

// append stores st in user's archive with the other party other if the
// user's preferences allow it, and reports whether it did. Errors are
// logged: archiving never stops a message.
func (a *Archive) append(ctx context.Context, user, other jid.JID, outgoing bool, st *xmlel.Element) (store.ArchiveEntry, bool) {
	log := a.s.Logger()
	ok, err := a.wanted(ctx, user, other)
	if err != nil {
		log.Error("mam: reading archiving preferences failed", "user", user.Localpart(), "err", err)
		return store.ArchiveEntry{}, false
	}
	if !ok {
		return store.ArchiveEntry{}, false
	}
	copied := st.ShallowCopy()
	copied.Name.Space = server.NSClient
	e, err := a.s.Store().AppendArchive(ctx, user.Localpart(), store.ArchiveEntry{
		With:         other.Bare().String(),
		WithResource: other.Resourcepart(),
		Outgoing:     outgoing,
		Stamp:        a.s.Now(),
		Stanza:       []byte(copied.String()),
	})
	if err != nil {
		log.Error("mam: archiving failed", "user", user.Localpart(), "err", err)
		return store.ArchiveEntry{}, false
	}
	return e, true
}

// wanted applies user's preferences to a message with other (XEP-0441
// §2.3): a matching 'never' JID wins over a matching 'always' one, then the
// default decides; "roster" archives contacts in the roster and the user's
// own JID. Users without preferences have default "always".
func (a *Archive) wanted(ctx context.Context, user, other jid.JID) (bool, error) {
	p, err := a.s.Store().ArchivePrefs(ctx, user.Localpart())
	if err != nil {
		return false, err
	}
	if listed(p.Never, other) {
		return false, nil
	}
	if listed(p.Always, other) {
		return true, nil
	}
	switch p.Default {
	case "never":
		return false, nil
	case "roster":
		if other.Bare().Equal(user) {
			return true, nil
		}
		_, err := a.s.Store().RosterItem(ctx, user.Localpart(), other.Bare().String())
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	return true, nil
}

// listed reports whether target matches one of jids (XEP-0441 §2.3.1): a
// full JID as is, a bare JID against target's bare JID.
func listed(jids []string, target jid.JID) bool {
	for _, s := range jids {
		j, err := jid.Parse(s)
		if err != nil {
			continue
		}
		if j.Resourcepart() == "" {
			if j.Equal(target.Bare()) {
				return true
			}
		} else if j.Equal(target) {
			return true
		}
	}
	return false
}

// stripStanzaIDs removes from st every XEP-0359 stanza-id whose 'by' is
// archive: only the server may claim ids of its archives (XEP-0359 §4 rules 3-4).
func stripStanzaIDs(st *xmlel.Element, archive jid.JID) {
	st.RemoveChildren(func(c *xmlel.Element) bool {
		if c.Name.Space != NSStanzaID || c.Name.Local != "stanza-id" {
			return false
		}
		by, err := jid.Parse(c.Get("by"))
		return err == nil && by.Equal(archive)
	})
}
