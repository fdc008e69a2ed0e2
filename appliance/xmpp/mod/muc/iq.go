package muc

import (
	"context"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// pendingIQ is an IQ forwarded from one occupant to another, awaiting its
// answer (XEP-0045 §7.5 IQ relaying, as Prosody does it).
type pendingIQ struct {
	id         string  // the requester's id
	requester  jid.JID // its real full JID
	target     jid.JID // the real full JID the request went to
	room       string
	targetNick string // the answer comes from room/targetNick
	at         time.Time
}

// iqResult builds the result answering the IQ request st with payload
// (nil for an empty result).
func iqResult(st, payload *xmlel.Element) *xmlel.Element {
	res := xmlel.New(server.NSClient, "iq", "type", "result", "id", st.Get("id"), "from", st.Get("to"), "to", st.Get("from"))
	if payload != nil {
		res.Add(payload)
	}
	return res
}

// handleIQ handles IQs to a room or occupant JID.
func (svc *Service) handleIQ(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	switch st.Get("type") {
	case "result", "error":
		if to.Resourcepart() != "" {
			svc.answerForwarded(ctx, st, from)
		}
		return
	case "get", "set":
	default:
		svc.reply(ctx, st, server.Errorf(server.ErrBadRequest, "IQ type must be get, set, result or error"))
		return
	}
	payloads := st.Elements()
	if len(payloads) != 1 || st.Get("id") == "" {
		svc.reply(ctx, st, server.Errorf(server.ErrBadRequest, "an IQ request has an id and exactly one payload"))
		return
	}
	r := svc.lockRoom(to.Localpart())
	if r == nil {
		svc.reply(ctx, st, server.Errorf(server.ErrItemNotFound, "no such room"))
		return
	}
	defer r.flush(ctx)
	if !r.visibleTo(from) {
		r.fail(st, server.Errorf(server.ErrItemNotFound, "no such room"))
		return
	}
	p := payloads[0]
	if to.Resourcepart() != "" {
		r.occupantIQ(ctx, st, p, from, to.Resourcepart())
		return
	}
	var (
		res *xmlel.Element
		err error
	)
	switch st.Get("type") + " " + p.Name.Space + " " + p.Name.Local {
	case "get " + NSDiscoInfo + " query":
		res, err = r.discoInfo(p, from)
	case "get " + NSDiscoItems + " query":
		res, err = r.discoItems(p)
	case "get " + NSAdmin + " query":
		res, err = r.adminGet(from, p)
	case "set " + NSAdmin + " query":
		res, err = r.adminSet(ctx, from, p)
	case "get " + NSOwner + " query":
		res, err = r.ownerGet(from, p)
	case "set " + NSOwner + " query":
		res, err = r.ownerSet(ctx, from, p)
	case "get " + NSVCard + " vCard":
		res, err = r.vcardGet()
	case "set " + NSVCard + " vCard":
		res, err = r.vcardSet(ctx, from, p)
	case "set " + NSMAM + " query", "set " + NSMAMv1 + " query":
		res, err = r.archiveQuery(ctx, st, p, from)
	case "get " + NSMAM + " query", "get " + NSMAMv1 + " query":
		res, err = r.archiveForm(from, p)
	case "get " + NSPing + " ping":
	default:
		err = server.ErrServiceUnavailable
	}
	if err != nil {
		se := asStanzaError(err)
		if se == server.ErrInternal {
			r.svc.s.Logger().Error("muc: IQ failed", "room", r.name, "ns", p.Name.Space, "err", err)
		}
		r.fail(st, se)
		return
	}
	r.send(iqResult(st, res))
}

// asStanzaError converts an error to the stanza error sent back.
func asStanzaError(err error) *server.StanzaError {
	if se, ok := err.(*server.StanzaError); ok {
		return se
	}
	return server.ErrInternal
}

// occupantIQ handles an IQ to an occupant JID: XEP-0410 self-ping is
// answered by the room (result when the sender is joined under that
// nickname, not-acceptable when it is not an occupant); a vCard request is
// answered with the occupant's account vCard (as Prosody sends it to the
// occupant's bare JID); any other request is relayed to the occupant's
// current session and its answer back (XEP-0045 §7.5).
func (r *room) occupantIQ(ctx context.Context, st, p *xmlel.Element, from jid.JID, nick string) {
	o := r.byJID[from.String()]
	key, kerr := nickKey(nick)
	if o == nil {
		r.fail(st, server.Errorf(server.ErrNotAcceptable, "you are not an occupant of this room"))
		return
	}
	if kerr == nil && o.key == key && p.Name.Space == NSPing && p.Name.Local == "ping" && st.Get("type") == "get" {
		r.send(iqResult(st, nil))
		return
	}
	target := r.occ[key]
	if kerr != nil || target == nil {
		r.fail(st, server.Errorf(server.ErrItemNotFound, "no such occupant"))
		return
	}
	if p.Name.Space == NSVCard && p.Name.Local == "vCard" {
		if st.Get("type") != "get" {
			r.fail(st, server.ErrForbidden)
			return
		}
		h := r.svc.s.IQHandler(server.ToAccount, "get", p.Name)
		if h == nil || !r.svc.s.IsLocal(target.bare) {
			r.fail(st, server.ErrServiceUnavailable)
			return
		}
		res, err := h(ctx, &server.IQ{Stanza: st, Payload: p, Type: "get", From: from, To: target.bare})
		if err != nil {
			r.fail(st, asStanzaError(err))
			return
		}
		r.send(iqResult(st, res))
		return
	}
	dest := target.current().jid
	id := r.svc.track(pendingIQ{
		id: st.Get("id"), requester: from, target: dest, room: r.name, targetNick: target.nick, at: r.svc.s.Now(),
	})
	fwd := st.ShallowCopy()
	fwd.Set("id", id)
	fwd.Set("from", r.occJID(o.nick).String())
	fwd.Set("to", dest.String())
	r.send(fwd)
}

// track records a forwarded IQ and returns the id it travels under. The
// table is bounded: expired entries go first, then the oldest.
func (svc *Service) track(p pendingIQ) string {
	svc.pmu.Lock()
	defer svc.pmu.Unlock()
	if len(svc.pending) >= maxPendingIQs {
		var oldest string
		for id, e := range svc.pending {
			if p.at.Sub(e.at) > pendingIQTTL {
				delete(svc.pending, id)
			} else if oldest == "" || e.at.Before(svc.pending[oldest].at) {
				oldest = id
			}
		}
		if len(svc.pending) >= maxPendingIQs {
			delete(svc.pending, oldest)
		}
	}
	id := "muc-" + randomID()
	svc.pending[id] = p
	return id
}

// answerForwarded relays the answer to a forwarded IQ back to the
// requester, from the answering occupant's JID.
func (svc *Service) answerForwarded(ctx context.Context, st *xmlel.Element, from jid.JID) {
	svc.pmu.Lock()
	p, ok := svc.pending[st.Get("id")]
	if ok && p.target.Equal(from) {
		delete(svc.pending, st.Get("id"))
	}
	svc.pmu.Unlock()
	if !ok || !p.target.Equal(from) {
		return
	}
	occ, err := jid.Parse(p.room + "@" + svc.domain.Domainpart() + "/" + p.targetNick)
	if err != nil {
		return
	}
	res := st.ShallowCopy()
	res.Set("id", p.id)
	res.Set("from", occ.String())
	res.Set("to", p.requester.String())
	svc.s.Route(ctx, res)
}
