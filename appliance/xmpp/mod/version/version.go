// Package version implements XEP-0092 Software Version for the server.
package version

import (
	"context"
	"encoding/xml"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// NS is the XEP-0092 namespace (XEP-0092 §2).
const NS = "jabber:iq:version"

// Name is the software name reported in <name/> (XEP-0092 §2).
const Name = "Hearth"

// Option configures Register (XEP-0092 §2 reply contents).
type Option func(*config)

type config struct{ os string }

// WithOS makes the server report os (for example "Linux") in the <os/>
// element. By default the operating system is not disclosed: the element is
// OPTIONAL (XEP-0092 §2) and revealing it may help attackers (XEP-0092 §5).
func WithOS(os string) Option { return func(c *config) { c.os = os } }

// Register answers software version requests addressed to the server (or
// with no 'to', answered by the server) with name "Hearth" and the version
// from s.Version() (XEP-0092 §2), and advertises jabber:iq:version in the
// server's disco#info (XEP-0092 §4).
func Register(s *server.Server, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	h := &handler{s: s, os: c.os}
	s.HandleIQ(server.ToServer, "get", xml.Name{Space: NS, Local: "query"}, h.get)
	s.AddFeature(server.ToServer, NS)
}

type handler struct {
	s  *server.Server
	os string
}

// get answers a version request (XEP-0092 §2).
func (h *handler) get(context.Context, *server.IQ) (*xmlel.Element, error) {
	q := xmlel.New(NS, "query")
	q.Add(xmlel.New(NS, "name").AddText(Name))
	q.Add(xmlel.New(NS, "version").AddText(h.s.Version()))
	if h.os != "" {
		q.Add(xmlel.New(NS, "os").AddText(h.os))
	}
	return q, nil
}
