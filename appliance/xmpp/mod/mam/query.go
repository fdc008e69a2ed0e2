package mam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// request is a parsed archive query (XEP-0313 §4).
type request struct {
	ns      string // urn:xmpp:mam:2 or urn:xmpp:mam:1: the namespace of the answer
	queryID string
	q       store.ArchiveQuery
	flip    bool // XEP-0313 §4.3.4 flipped page
}

// backward reports whether the request pages backward (XEP-0059 §2.3).
func (r *request) backward() bool { return r.q.Before != "" || r.q.Last }

// query answers an archive query (XEP-0313 §4): it sends every result as a
// <message><result><forwarded/></result></message> to the requesting
// session, in archive order (reversed with <flip-page/>), then returns the
// <fin/> for the IQ result, which the same session queue delivers after
// them. Results come from the address the query was sent to (none for a
// query without 'to'), so the client can check their origin (XEP-0313 §8.2).
//
// Errors: forbidden for another account's archive (XEP-0313 §8.1);
// feature-not-implemented for a form field it does not know (XEP-0313
// §4.1.5) or a 'node' (pubsub archives); bad-request for a malformed form,
// date (XEP-0082), JID or RSM element; item-not-found for an unknown
// before-id, after-id, id, <after/> or <before/> (XEP-0313 §4.1.3, §4.3.2).
// A <max/> above the page size cap is lowered to it; without <max/> the cap
// is the page size. A page is also cut short (complete='false') before its
// results would fill a quarter of the session's send queue.
func (a *Archive) query(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(a.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "you can only query your own archive")
	}
	if iq.Session == nil {
		return nil, server.ErrServiceUnavailable
	}
	user := iq.From.Localpart()
	return a.answer(ctx, iq, func(ctx context.Context, q store.ArchiveQuery) (store.ArchivePage, error) {
		return a.s.Store().QueryArchive(ctx, user, q)
	}, iq.Session.Send)
}

// answer parses the query iq, reads the page with read, sends the results
// with send and returns the <fin/> (see query).
func (a *Archive) answer(ctx context.Context, iq *server.IQ, read PageReader, send func(*xmlel.Element) bool) (*xmlel.Element, error) {
	req, err := a.parseQuery(iq.Payload)
	if err != nil {
		return nil, err
	}
	page, err := read(ctx, req.q)
	if errors.Is(err, store.ErrNotFound) {
		return nil, server.Errorf(server.ErrItemNotFound, "no such message in the archive")
	}
	if err != nil {
		return nil, err
	}
	a.limitBytes(&page, req.backward())
	for n := range page.Entries {
		i := n
		if req.flip {
			i = len(page.Entries) - 1 - n
		}
		if !send(a.result(iq, req, page.Entries[i])) {
			return nil, server.ErrResourceConstraint // the session is gone
		}
	}
	return fin(req.ns, page), nil
}

// resultOverhead approximates the bytes a result message adds to the
// archived stanza.
const resultOverhead = 400

// limitBytes cuts page so its result messages fit into a quarter of the
// session send queue (which would otherwise end the session), keeping at
// least one entry: the newest entries when paging backward, the oldest
// otherwise, so that the client's next page request continues seamlessly.
func (a *Archive) limitBytes(page *store.ArchivePage, backward bool) {
	budget := a.s.Limits().SendQueueBytes / 4
	n, used := 0, 0
	for n < len(page.Entries) {
		e := page.Entries[n]
		if backward {
			e = page.Entries[len(page.Entries)-1-n]
		}
		used += len(e.Stanza) + resultOverhead
		if used > budget && n > 0 {
			break
		}
		n++
	}
	if n == len(page.Entries) {
		return
	}
	page.Complete = false
	if backward {
		page.FirstIndex += len(page.Entries) - n
		page.Entries = page.Entries[len(page.Entries)-n:]
	} else {
		page.Entries = page.Entries[:n]
	}
}

// result wraps one archived message for delivery (XEP-0313 §4.2).
func (a *Archive) result(iq *server.IQ, req request, e store.ArchiveEntry) *xmlel.Element {
	msg := xmlel.New(server.NSClient, "message", "id", randomID())
	if iq.Stanza.Get("to") != "" {
		msg.Set("from", iq.To.String())
	}
	msg.Set("to", iq.From.String())
	res := xmlel.New(req.ns, "result")
	res.Set("queryid", req.queryID)
	res.Set("id", e.ID)
	fwd := xmlel.New(NSForward, "forwarded")
	fwd.Add(xmlel.New(server.NSDelay, "delay", "stamp", stamp(e.Stamp)))
	if inner, err := xmlel.Parse(string(e.Stanza)); err == nil {
		fwd.Add(inner)
	} else {
		// XEP-0313 §3.2 allows omitting the message while keeping its place.
		a.s.Logger().Error("mam: corrupt archived message", "user", iq.From.Localpart(), "id", e.ID, "err", err)
	}
	return msg.Add(res.Add(fwd))
}

// fin builds the IQ result payload of a query (XEP-0313 §4.3.2) with the RSM
// set of the page (XEP-0059 §2.1).
func fin(ns string, page store.ArchivePage) *xmlel.Element {
	f := xmlel.New(ns, "fin", "complete", strconv.FormatBool(page.Complete))
	set := xmlel.New(NSRSM, "set")
	if n := len(page.Entries); n > 0 {
		set.Add(
			xmlel.New(NSRSM, "first", "index", strconv.Itoa(page.FirstIndex)).AddText(page.Entries[0].ID),
			xmlel.New(NSRSM, "last").AddText(page.Entries[n-1].ID),
		)
	}
	set.Add(xmlel.New(NSRSM, "count").AddText(strconv.Itoa(page.Count)))
	return f.Add(set)
}

// parseQuery reads the form (XEP-0313 §4.1), the RSM set (XEP-0059) and the
// flip-page flag (XEP-0313 §4.3.4) of a query payload.
func (a *Archive) parseQuery(p *xmlel.Element) (request, error) {
	req := request{ns: p.Name.Space, queryID: p.Get("queryid")}
	req.q.Max = a.maxPage
	if p.Get("node") != "" {
		return req, server.Errorf(server.ErrFeatureNotImplemented, "pubsub node archives are not supported")
	}
	forms := p.ChildrenNamed(NSDataForm, "x")
	if len(forms) > 1 {
		return req, server.Errorf(server.ErrBadRequest, "more than one data form")
	}
	if len(forms) == 1 {
		if err := parseForm(forms[0], &req.q); err != nil {
			return req, err
		}
	}
	if set := p.Child(NSRSM, "set"); set != nil {
		if err := a.parseSet(set, &req.q); err != nil {
			return req, err
		}
	}
	req.flip = p.Child("", "flip-page") != nil
	return req, nil
}

// parseForm applies the fields of a submitted query form (XEP-0313 §4.1).
// Empty fields are ignored.
func parseForm(x *xmlel.Element, q *store.ArchiveQuery) error {
	if t := x.Get("type"); t != "" && t != "submit" {
		return server.Errorf(server.ErrBadRequest, "the query form must be of type 'submit'")
	}
	seen := make(map[string]bool)
	for _, f := range x.ChildrenNamed(NSDataForm, "field") {
		name := f.Get("var")
		if seen[name] {
			return server.Errorf(server.ErrBadRequest, "field '"+name+"' appears twice")
		}
		seen[name] = true
		var values []string
		for _, v := range f.ChildrenNamed(NSDataForm, "value") {
			if s := strings.TrimSpace(v.Text()); s != "" {
				values = append(values, s)
			}
		}
		if name != "ids" && len(values) > 1 {
			return server.Errorf(server.ErrBadRequest, "field '"+name+"' takes one value")
		}
		value := ""
		if len(values) == 1 {
			value = values[0]
		}
		var err error
		switch name {
		case "FORM_TYPE":
			if value != "" && value != NS && value != NSv1 {
				return server.Errorf(server.ErrBadRequest, "FORM_TYPE must be "+NS)
			}
		case "with":
			if value != "" {
				j, err := jid.Parse(value)
				if err != nil {
					return server.Errorf(server.ErrBadRequest, "malformed JID in 'with'")
				}
				q.With, q.WithResource = j.Bare().String(), j.Resourcepart()
			}
		case "start":
			q.Start, err = parseDateTime(value)
		case "end":
			q.End, err = parseDateTime(value)
		case "after-id":
			q.AfterID = value
		case "before-id":
			q.BeforeID = value
		case "ids":
			if len(values) > MaxQueryIDs {
				return server.Errorf(server.ErrBadRequest, "at most "+strconv.Itoa(MaxQueryIDs)+" ids per query")
			}
			q.IDs = values
		case "":
			return server.Errorf(server.ErrBadRequest, "a form field without 'var'")
		default:
			return server.Errorf(server.ErrFeatureNotImplemented, "unknown field '"+name+"'")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseDateTime parses a XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.sss]TZD);
// "" yields the zero time.
func parseDateTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, server.Errorf(server.ErrBadRequest, "malformed XEP-0082 date-time '"+s+"'")
	}
	return t, nil
}

// parseSet applies an RSM request (XEP-0059 §2): <max/>, <after/>,
// <before/> (empty: the last page) and <index/>.
func (a *Archive) parseSet(set *xmlel.Element, q *store.ArchiveQuery) error {
	if m := set.Child(NSRSM, "max"); m != nil {
		n, err := strconv.Atoi(strings.TrimSpace(m.Text()))
		if err != nil || n < 0 {
			return server.Errorf(server.ErrBadRequest, "<max/> must be a non-negative integer")
		}
		q.Max = min(n, a.maxPage)
	}
	if e := set.Child(NSRSM, "after"); e != nil {
		q.After = strings.TrimSpace(e.Text())
	}
	if e := set.Child(NSRSM, "before"); e != nil {
		q.Before = strings.TrimSpace(e.Text())
		q.Last = q.Before == ""
	}
	if e := set.Child(NSRSM, "index"); e != nil {
		n, err := strconv.Atoi(strings.TrimSpace(e.Text()))
		if err != nil || n < 0 {
			return server.Errorf(server.ErrBadRequest, "<index/> must be a non-negative integer")
		}
		if q.After != "" || q.Before != "" || q.Last {
			return server.Errorf(server.ErrBadRequest, "<index/> cannot be combined with <after/> or <before/>")
		}
		q.Index = n
	}
	return nil
}

// form answers a request for the query form (XEP-0313 §4.1.5).
func (a *Archive) form(_ context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(a.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "you can only query your own archive")
	}
	return QueryForm(iq.Payload.Name.Space), nil
}

// QueryForm returns the <query/> in namespace ns (urn:xmpp:mam:2 or
// urn:xmpp:mam:1) carrying the query form with the fields Hearth's archives
// accept (XEP-0313 §4.1.5), for archives of other entities such as MUC
// rooms.
func QueryForm(ns string) *xmlel.Element {
	field := func(typ, name string) *xmlel.Element {
		return xmlel.New(NSDataForm, "field", "type", typ, "var", name)
	}
	x := xmlel.New(NSDataForm, "x", "type", "form").Add(
		field("hidden", "FORM_TYPE").Add(xmlel.New(NSDataForm, "value").AddText(ns)),
		field("jid-single", "with"),
		field("text-single", "start"),
		field("text-single", "end"),
		field("text-single", "before-id"),
		field("text-single", "after-id"),
		field("list-multi", "ids").Add(
			// XEP-0122: the list is open to any value.
			xmlel.New("http://jabber.org/protocol/xdata-validate", "validate", "datatype", "xs:string").Add(
				xmlel.New("http://jabber.org/protocol/xdata-validate", "open"))),
	)
	return xmlel.New(ns, "query").Add(x)
}

// metadata answers an archive metadata request (XEP-0313 §5): the id and
// time of the first and last entries, or an empty <metadata/> for an empty
// archive.
func (a *Archive) metadata(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(a.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "you can only query your own archive")
	}
	el := xmlel.New(NS, "metadata")
	user := iq.From.Localpart()
	first, err := a.s.Store().QueryArchive(ctx, user, store.ArchiveQuery{Max: 1})
	if err != nil {
		return nil, err
	}
	last, err := a.s.Store().QueryArchive(ctx, user, store.ArchiveQuery{Last: true, Max: 1})
	if err != nil {
		return nil, err
	}
	if len(first.Entries) == 0 || len(last.Entries) == 0 {
		return el, nil
	}
	return el.Add(
		xmlel.New(NS, "start", "id", first.Entries[0].ID, "timestamp", stamp(first.Entries[0].Stamp)),
		xmlel.New(NS, "end", "id", last.Entries[0].ID, "timestamp", stamp(last.Entries[0].Stamp)),
	), nil
}

// stamp formats t as a XEP-0082 DateTime in UTC with milliseconds.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// randomID returns a random stanza id for result messages.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
