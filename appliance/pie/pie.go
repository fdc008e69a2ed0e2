// Package pie exports an account's data in the Portable Import/Export
// format of XEP-0227 (version 1.1, namespace urn:xmpp:pie:0), for the
// user's own download (web UI) and the operator's CLI: roster (§4.3),
// offline messages (§4.4), private XML (§4.5), vCard (§4.6), pending
// subscription requests (§4.8), PEP nodes with their configuration and
// items (§4.9) and, if asked, the message archive (§4.10).
//
// Credentials are left out: no password is ever stored, and the SCRAM keys
// (§4.2) would let whoever holds the file try passwords offline.
package pie

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Namespaces of XEP-0227 and of the elements it contains.
const (
	NS        = "urn:xmpp:pie:0"
	NSArchive = "urn:xmpp:pie:0#mam"
	nsRoster  = "jabber:iq:roster"
	nsPrivate = "jabber:iq:private"
	nsClient  = "jabber:client"
	nsPubSub  = "http://jabber.org/protocol/pubsub"
	nsOwner   = "http://jabber.org/protocol/pubsub#owner"
	nsData    = "jabber:x:data"
	nsMAM     = "urn:xmpp:mam:2"
	nsForward = "urn:xmpp:forward:0"
	nsDelay   = "urn:xmpp:delay"
)

// archivePage is how many archived messages are read at once.
const archivePage = 500

// Options choose what an export contains beside the account's state.
type Options struct {
	// Archive includes the XEP-0313 message archive (XEP-0227 §4.10),
	// which can be large.
	Archive bool
}

// ExportUser writes the XEP-0227 document of the account username of
// domain to w: one <server-data/> with one <host jid=domain/> and one
// <user name=username/>. Stored stanzas are parsed and written again, so a
// damaged one is skipped rather than breaking the document. It reads the
// store section by section (each a consistent snapshot of its part).
// Errors: store errors (ErrNotFound for an unknown account) or w's.
func ExportUser(ctx context.Context, st *store.Store, domain, username string, w io.Writer, o Options) error {
	if ok, err := st.AccountExists(ctx, username); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: account %q", store.ErrNotFound, username)
	}
	bw := bufio.NewWriter(w)
	x := &writer{w: bw}
	x.raw("<?xml version='1.0' encoding='UTF-8'?>\n")
	x.raw(`<server-data xmlns="` + NS + `">` + "\n")
	x.el(xmlel.New(NS, "host", "jid", domain), NS, false)
	x.el(xmlel.New(NS, "user", "name", username), NS, false)
	x.raw("\n")

	// §4.3 roster, as a roster result (RFC 6121 §2.1.3).
	items, _, err := st.Roster(ctx, username)
	if err != nil {
		return err
	}
	q := xmlel.New(nsRoster, "query")
	for _, it := range items {
		item := xmlel.New(nsRoster, "item", "jid", it.JID)
		if it.Name != "" {
			item.Set("name", it.Name)
		}
		sub := it.Subscription
		if sub == "" {
			sub = "none"
		}
		item.Set("subscription", sub)
		if it.Ask {
			item.Set("ask", "subscribe")
		}
		if it.Approved {
			item.Set("approved", "true")
		}
		for _, g := range it.Groups {
			item.Add(xmlel.New(nsRoster, "group").AddText(g))
		}
		q.Add(item)
	}
	x.el(q, NS, true)

	// §4.6 vCard.
	if b, err := st.VCard(ctx, username); err == nil {
		x.stored(b, NS)
	} else if !isNotFound(err) {
		return err
	}

	// §4.5 private XML storage.
	priv, err := st.PrivateXMLItems(ctx, username)
	if err != nil {
		return err
	}
	if len(priv) > 0 {
		pq := xmlel.New(nsPrivate, "query")
		for _, b := range priv {
			if el, err := xmlel.Parse(string(b)); err == nil {
				pq.Add(el)
			}
		}
		x.el(pq, NS, true)
	}

	// §4.8 incoming subscription requests.
	reqs, err := st.SubscriptionRequests(ctx, username)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		x.stanza(r.Stanza, NS)
	}

	// §4.4 offline messages, oldest first.
	msgs, err := st.OfflineMessages(ctx, username)
	if err != nil {
		return err
	}
	if len(msgs) > 0 {
		x.raw("<offline-messages>")
		for _, m := range msgs {
			x.stanza(m.Stanza, NS)
		}
		x.raw("</offline-messages>\n")
	}

	// §4.9 PEP: node configurations, then items.
	if err := x.pep(ctx, st, username); err != nil {
		return err
	}

	// §4.10 message archive, oldest first.
	if o.Archive {
		if err := x.archive(ctx, st, username); err != nil {
			return err
		}
	}
	x.raw("</user>\n</host>\n</server-data>\n")
	if x.err != nil {
		return x.err
	}
	return bw.Flush()
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// writer writes pieces of the document, keeping the first error.
type writer struct {
	w   *bufio.Writer
	err error
}

func (x *writer) raw(s string) {
	if x.err == nil {
		_, x.err = x.w.WriteString(s)
	}
}

// el writes e in the scope of default namespace parent; with close false
// only its start tag (its children follow).
func (x *writer) el(e *xmlel.Element, parent string, close bool) {
	if x.err != nil {
		return
	}
	if close {
		b := e.Append(nil, parent)
		b = append(b, '\n')
		_, x.err = x.w.Write(b)
		return
	}
	// A start tag: serialize with a placeholder child and cut before it.
	s := xmlel.New(e.Name.Space, e.Name.Local)
	s.Attr = e.Attr
	b := s.Append(nil, parent)
	_, x.err = x.w.Write(append(b[:len(b)-2], '>'))
}

// stored writes a stored element (vCard, private XML) parsed again.
func (x *writer) stored(b []byte, parent string) {
	if el, err := xmlel.Parse(string(b)); err == nil {
		x.el(el, parent, true)
	}
}

// stanza writes a stored stanza in jabber:client.
func (x *writer) stanza(b []byte, parent string) {
	el, err := xmlel.Parse(string(b))
	if err != nil {
		return
	}
	if el.Name.Space == "" {
		el.Name.Space = nsClient
	}
	x.el(el, parent, true)
}

// pep writes the account's PEP nodes: one pubsub#owner element with a
// <configure/> data form per node, one pubsub element with its items.
func (x *writer) pep(ctx context.Context, st *store.Store, username string) error {
	nodes, err := st.PEPNodes(ctx, username)
	if err != nil || len(nodes) == 0 {
		return err
	}
	owner := xmlel.New(nsOwner, "pubsub")
	data := xmlel.New(nsPubSub, "pubsub")
	for _, n := range nodes {
		owner.Add(xmlel.New(nsOwner, "configure", "node", n.Name).Add(configForm(n.Config)))
		items, err := st.PEPItems(ctx, username, n.Name, nil, 0)
		if err != nil && !isNotFound(err) {
			return err
		}
		its := xmlel.New(nsPubSub, "items", "node", n.Name)
		for _, it := range items {
			item := xmlel.New(nsPubSub, "item", "id", it.ID)
			if it.Publisher != "" {
				item.Set("publisher", it.Publisher)
			}
			if p, err := xmlel.Parse(string(it.Payload)); err == nil {
				item.Add(p)
			}
			its.Add(item)
		}
		data.Add(its)
	}
	x.el(owner, NS, true)
	x.el(data, NS, true)
	return nil
}

// configForm turns a node configuration stored as JSON (mod/pep) into the
// XEP-0004 form of XEP-0060 §16.4.3 pubsub#node_config: each JSON field
// "name" is the form field "pubsub#name".
func configForm(cfg []byte) *xmlel.Element {
	x := xmlel.New(nsData, "x", "type", "submit")
	x.Add(xmlel.New(nsData, "field", "var", "FORM_TYPE", "type", "hidden").
		Add(xmlel.New(nsData, "value").AddText("http://jabber.org/protocol/pubsub#node_config")))
	var m map[string]any
	if json.Unmarshal(cfg, &m) != nil {
		return x
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var v string
		switch t := m[k].(type) {
		case string:
			v = t
		case bool:
			v = strconv.FormatBool(t)
		case float64:
			v = strconv.FormatFloat(t, 'f', -1, 64)
		default:
			continue
		}
		if k == "max_items" && v == "0" {
			v = "max"
		}
		x.Add(xmlel.New(nsData, "field", "var", "pubsub#"+k).Add(xmlel.New(nsData, "value").AddText(v)))
	}
	return x
}

// archive writes the XEP-0313 archive as <result/> elements of
// urn:xmpp:mam:2 with the forwarded message and its delay stamp, oldest
// first, reading it a page at a time.
func (x *writer) archive(ctx context.Context, st *store.Store, username string) error {
	x.raw(`<archive xmlns="` + NSArchive + `">` + "\n")
	after := ""
	for {
		page, err := st.QueryArchive(ctx, username, store.ArchiveQuery{After: after, Max: archivePage})
		if err != nil {
			return err
		}
		for _, e := range page.Entries {
			msg, err := xmlel.Parse(string(e.Stanza))
			if err != nil {
				continue
			}
			if msg.Name.Space == "" {
				msg.Name.Space = nsClient
			}
			fwd := xmlel.New(nsForward, "forwarded").
				Add(xmlel.New(nsDelay, "delay", "stamp", e.Stamp.UTC().Format(time.RFC3339Nano))).
				Add(msg)
			x.el(xmlel.New(nsMAM, "result", "id", e.ID).Add(fwd), NSArchive, true)
			after = e.ID
		}
		if x.err != nil {
			return x.err
		}
		if page.Complete || len(page.Entries) == 0 {
			break
		}
	}
	x.raw("</archive>\n")
	return nil
}
