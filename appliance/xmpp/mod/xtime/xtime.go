// Package xtime implements XEP-0202 Entity Time for the server.
package xtime

import (
	"context"
	"encoding/xml"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// NS is the XEP-0202 namespace (XEP-0202 §2).
const NS = "urn:xmpp:time"

// utcLayout is the XEP-0082 §3.2 DateTime profile in UTC, to the second as
// in the XEP-0202 §3 example.
const utcLayout = "2006-01-02T15:04:05Z"

// Register answers entity time requests addressed to the server (or with no
// 'to', answered by the server) with the server clock s.Now() in UTC: <utc/>
// ends in "Z" and <tzo/> is "+00:00" (XEP-0202 §2, XEP-0082 TZD), so the
// host's local time zone is not disclosed. It advertises urn:xmpp:time in the
// server's disco#info (XEP-0202 §4).
func Register(s *server.Server) {
	h := &handler{s: s}
	s.HandleIQ(server.ToServer, "get", xml.Name{Space: NS, Local: "time"}, h.get)
	s.AddFeature(server.ToServer, NS)
}

type handler struct{ s *server.Server }

// get answers an entity time request (XEP-0202 §2).
func (h *handler) get(context.Context, *server.IQ) (*xmlel.Element, error) {
	t := xmlel.New(NS, "time")
	t.Add(xmlel.New(NS, "tzo").AddText("+00:00"))
	t.Add(xmlel.New(NS, "utc").AddText(h.s.Now().UTC().Format(utcLayout)))
	return t, nil
}
