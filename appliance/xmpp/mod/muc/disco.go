package muc

import (
	"context"
	"sort"
	"strconv"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/mam"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// serviceFeatures are the service's disco#info features (XEP-0045 §6.1,
// XEP-0313 §7, XEP-0410, XEP-0421, XEP-0359).
var serviceFeatures = []string{
	NSDiscoInfo, NSDiscoItems, NS, NSStableID, NSSelfPingOpt, NSMAM, NSStanzaID,
	NSOccupantID, NSPing, NSVCard,
}

// handleService answers stanzas to the service's own domain: disco#info
// and disco#items (XEP-0045 §6.1, §6.3: the public rooms) and ping.
// Messages get service-unavailable; presence is ignored.
func (svc *Service) handleService(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	switch st.Name.Local {
	case "message":
		svc.reply(ctx, st, server.ErrServiceUnavailable)
		return
	case "presence":
		return
	}
	typ := st.Get("type")
	if typ == "result" || typ == "error" {
		return
	}
	p := st.FirstElement()
	if (typ != "get" && typ != "set") || p == nil || len(st.Elements()) != 1 || st.Get("id") == "" {
		svc.reply(ctx, st, server.ErrBadRequest)
		return
	}
	var res *xmlel.Element
	switch {
	case typ == "get" && p.Name.Space == NSDiscoInfo && p.Name.Local == "query":
		if p.Get("node") != "" {
			svc.reply(ctx, st, server.ErrItemNotFound)
			return
		}
		res = xmlel.New(NSDiscoInfo, "query").Add(
			xmlel.New(NSDiscoInfo, "identity", "category", "conference", "type", "text", "name", svc.name))
		feats := append([]string(nil), serviceFeatures...)
		sort.Strings(feats)
		for _, f := range feats {
			res.Add(xmlel.New(NSDiscoInfo, "feature", "var", f))
		}
	case typ == "get" && p.Name.Space == NSDiscoItems && p.Name.Local == "query":
		if p.Get("node") != "" {
			svc.reply(ctx, st, server.ErrItemNotFound)
			return
		}
		res = svc.publicRooms()
	case typ == "get" && p.Name.Space == NSPing && p.Name.Local == "ping":
	default:
		svc.reply(ctx, st, server.ErrServiceUnavailable)
		return
	}
	svc.s.Route(ctx, iqResult(st, res))
}

// publicRooms lists the configured public rooms by JID (XEP-0045 §6.3).
func (svc *Service) publicRooms() *xmlel.Element {
	type entry struct{ jid, name string }
	var list []entry
	for _, r := range svc.allRooms() {
		r.mu.Lock()
		if !r.gone && !r.locked && r.cfg.Public {
			name := r.cfg.Name
			if name == "" {
				name = r.name
			}
			list = append(list, entry{r.jid.String(), name})
		}
		r.mu.Unlock()
	}
	sort.Slice(list, func(i, j int) bool { return list[i].jid < list[j].jid })
	q := xmlel.New(NSDiscoItems, "query")
	for _, e := range list {
		q.Add(xmlel.New(NSDiscoItems, "item", "jid", e.jid, "name", e.name))
	}
	return q
}

// discoInfo describes the room (XEP-0045 §6.4): identity, muc_* features
// and the muc#roominfo form (§15.5.4). The subject and the number of
// occupants of a members-only room are for its members only.
func (r *room) discoInfo(p *xmlel.Element, from jid.JID) (*xmlel.Element, error) {
	if p.Get("node") != "" {
		return nil, server.ErrItemNotFound
	}
	name := r.cfg.Name
	if name == "" {
		name = r.name
	}
	q := xmlel.New(NSDiscoInfo, "query").Add(
		xmlel.New(NSDiscoInfo, "identity", "category", "conference", "type", "text", "name", name))
	feats := append([]string{NSDiscoInfo, NSDiscoItems, NS, NSStableID, NSSelfPingOpt, NSOccupantID,
		NSStanzaID, NSVCard, NSRequest}, r.cfg.features()...)
	if r.cfg.Archived {
		feats = append(feats, NSMAM, NSMAMv1)
	}
	sort.Strings(feats)
	for _, f := range feats {
		q.Add(xmlel.New(NSDiscoInfo, "feature", "var", f))
	}
	form := xmlel.New(NSDataForm, "x", "type", "result").Add(hiddenField("FORM_TYPE", NSRoomInfo))
	add := func(typ, name, label, value string) {
		form.Add(field(typ, name, label, value))
	}
	add("text-single", "muc#roomconfig_roomname", "Name", r.cfg.Name)
	add("text-single", "muc#roominfo_description", "Description", r.cfg.Description)
	if !r.cfg.MembersOnly || affRank(r.affOf(from)) >= affRank(affMember) {
		add("text-single", "muc#roominfo_occupants", "Number of occupants", strconv.Itoa(len(r.occ)))
		add("text-single", "muc#roominfo_subject", "Subject", r.subject.text)
	}
	add("boolean", "muc#roominfo_subjectmod", "Only moderators may change the subject", boolValue(!r.cfg.ChangeSubject))
	add("text-single", "muc#roominfo_lang", "Language", r.cfg.Language)
	if r.photo != "" {
		add("text-multi", "muc#roominfo_avatarhash", "Avatar hash", r.photo)
	}
	if !r.created.IsZero() {
		add("text-single", "x-muc#roominfo_creationdate", "Created", stamp(r.created))
	}
	return q.Add(form), nil
}

// discoItems answers disco#items on the room with an empty list (XEP-0045
// §6.5 lets a room keep its occupants private).
func (r *room) discoItems(p *xmlel.Element) (*xmlel.Element, error) {
	if p.Get("node") != "" {
		return nil, server.ErrItemNotFound
	}
	return xmlel.New(NSDiscoItems, "query"), nil
}

// vcardGet returns the room's vCard (Prosody's mod_vcard_muc), or
// item-not-found when it has none.
func (r *room) vcardGet() (*xmlel.Element, error) {
	if len(r.vcard) == 0 {
		return nil, server.ErrItemNotFound
	}
	el, err := xmlel.Parse(string(r.vcard))
	if err != nil {
		return nil, err
	}
	return el, nil
}

// vcardSet replaces the room's vCard (owners only, forbidden otherwise; an
// empty <vCard/> removes it; larger than the limit is not-acceptable) and
// sends every occupant the room's presence with the new avatar hash
// (XEP-0153).
func (r *room) vcardSet(ctx context.Context, from jid.JID, p *xmlel.Element) (*xmlel.Element, error) {
	if r.affOf(from) != affOwner {
		return nil, server.Errorf(server.ErrForbidden, "only owners may change the room's vCard")
	}
	var data []byte
	if len(p.Elements()) > 0 {
		data = []byte(p.String())
		if len(data) > r.svc.opts.MaxVCardBytes {
			return nil, server.Errorf(server.ErrNotAcceptable, "vCard too large: the limit is "+strconv.Itoa(r.svc.opts.MaxVCardBytes)+" bytes")
		}
		if ph := p.Child(NSVCard, "PHOTO"); ph != nil {
			if _, err := decodeBase64(ph.ChildText(NSVCard, "BINVAL")); err != nil {
				return nil, server.Errorf(server.ErrBadRequest, "the photo is not valid base64")
			}
		}
	}
	old := r.vcard
	r.setVCard(data)
	if r.saved {
		if err := r.save(ctx); err != nil {
			r.setVCard(old)
			return nil, err
		}
	}
	for _, o := range r.sortedOccupants() {
		for _, s := range o.sessions {
			r.send(r.avatarPresence(s.jid))
		}
	}
	return nil, nil
}

// archiveAllowed reports whether from may read the room archive: not an
// outcast, and in a members-only room a member, admin or owner (XEP-0313
// §8.1: the room's privacy decides).
func (r *room) archiveAllowed(from jid.JID) error {
	aff := r.affOf(from)
	if aff == affOutcast || (r.cfg.MembersOnly && affRank(aff) < affRank(affMember)) {
		return server.Errorf(server.ErrForbidden, "only members may read this room's archive")
	}
	return nil
}

// archiveQuery answers a XEP-0313 query on the room JID with mod/mam's
// parsing, paging and result format; the results come from the room JID
// and carry the broadcast messages (from the occupant JIDs). A 'with' of
// an occupant JID keeps that nickname's messages.
func (r *room) archiveQuery(ctx context.Context, st, p *xmlel.Element, from jid.JID) (*xmlel.Element, error) {
	if err := r.archiveAllowed(from); err != nil {
		return nil, err
	}
	iq := &server.IQ{Stanza: st, Payload: p, Type: "set", From: from, To: r.jid}
	read := func(ctx context.Context, q store.ArchiveQuery) (store.ArchivePage, error) {
		if q.With != "" {
			if w, err := jid.Parse(q.With); err != nil || !w.Equal(r.jid) {
				return store.ArchivePage{Complete: true}, nil
			}
		}
		q.With = ""
		if !r.saved {
			return store.ArchivePage{Complete: true}, nil
		}
		return r.svc.s.Store().QueryMUCArchive(ctx, r.name, q)
	}
	return mam.Answer(ctx, r.svc.s, iq, r.svc.opts.MaxPageSize, read, func(m *xmlel.Element) bool {
		r.send(m)
		return true
	})
}

// archiveForm returns the archive query form (XEP-0313 §4.1.5).
func (r *room) archiveForm(from jid.JID, p *xmlel.Element) (*xmlel.Element, error) {
	if err := r.archiveAllowed(from); err != nil {
		return nil, err
	}
	return mam.QueryForm(p.Name.Space), nil
}
