package server

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/netip"
	"sort"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stream"
)

// MaxPreAuthErrors is how many error answers one stream may receive from
// pre-authentication IQ handlers (wrong tokens, taken usernames) before it
// is closed with the policy-violation stream error (RFC 6120 §4.9.3.14).
const MaxPreAuthErrors = 5

// PreAuthIQ is an IQ request received on a secure stream before
// authentication (RFC 6120 §6 not yet done), such as an in-band registration
// (XEP-0077 §3) or an invitation token (XEP-0445 §4, XEP-0401).
type PreAuthIQ struct {
	// Stanza is the whole request; Payload its first child element.
	Stanza, Payload *xmlel.Element
	// Type is "get" or "set".
	Type string
	// RemoteIP is the client's address.
	RemoteIP netip.Addr
	// Values is kept for the rest of the stream and shared by every
	// pre-authentication handler, for example a validated invitation
	// between the <preauth/> IQ and the registration.
	Values map[string]any
	// Done, set by a handler, ends the pre-authentication exchange after
	// its answer: the stream goes on with the remaining features
	// (authentication). Set it when the exchange reached its goal (the
	// account was created).
	Done bool
}

// PreAuthIQHandler answers one pre-authentication IQ. It returns the
// payload of the result (nil for an empty result) or an error: a
// *StanzaError is sent as is, any other error as internal-server-error and
// logged. Answers carry no 'from' or 'to': the stream has no address yet.
type PreAuthIQHandler func(ctx context.Context, iq *PreAuthIQ) (*xmlel.Element, error)

// preAuthKey selects a pre-authentication handler.
type preAuthKey struct {
	typ  string
	name xml.Name
}

// preAuth holds the pre-authentication handlers and the elements they
// advertise; fixed before serving.
type preAuth struct {
	handlers map[preAuthKey]PreAuthIQHandler
	adverts  []*xmlel.Element
}

// HandlePreAuthIQ registers h for IQs of type typ ("get"/"set") whose
// payload is named name, received on a secure stream before authentication
// (for example XEP-0077 in-band registration, which happens there, §3).
// Such an exchange is a stream feature for mellium: it starts with the
// first IQ and takes every following IQ until a handler sets Done; any
// other element in between ends the stream with not-authorized. An IQ no
// handler takes is answered with service-unavailable. Register every
// handler before the first ListenC2S.
func (s *Server) HandlePreAuthIQ(typ string, name xml.Name, h PreAuthIQHandler) {
	if s.preauth.handlers == nil {
		s.preauth.handlers = make(map[preAuthKey]PreAuthIQHandler)
	}
	s.preauth.handlers[preAuthKey{typ: typ, name: name}] = h
}

// AddPreAuthFeature adds el to the stream features listed on secure streams
// before authentication, such as <register
// xmlns='http://jabber.org/features/iq-register'/> (XEP-0077 §4) or
// <register xmlns='urn:xmpp:ibr-token:0'/> (XEP-0445 §3).
func (s *Server) AddPreAuthFeature(el *xmlel.Element) {
	s.preauth.adverts = append(s.preauth.adverts, el)
}

// preAuthFeatures returns one mellium stream feature per payload namespace
// with pre-authentication handlers (mellium selects an IQ-started feature by
// its payload's namespace); the first one lists the advertised elements.
// values is shared by the features of this stream.
func (cc *c2sConn) preAuthFeatures() []xmpp.StreamFeature {
	s := cc.srv
	if len(s.preauth.handlers) == 0 {
		return nil
	}
	values := map[string]any{}
	names := map[string]xml.Name{}
	for k := range s.preauth.handlers {
		names[k.name.Space] = k.name
	}
	spaces := make([]string, 0, len(names))
	for ns := range names {
		spaces = append(spaces, ns)
	}
	sort.Strings(spaces)
	var out []xmpp.StreamFeature
	for _, ns := range spaces {
		first := len(out) == 0
		out = append(out, xmpp.StreamFeature{
			Name:       names[ns],
			Necessary:  xmpp.Secure,
			Prohibited: xmpp.Authn,
			List: func(ctx context.Context, e xmlstream.TokenWriter, _ xml.StartElement) (bool, error) {
				if !first {
					return false, nil
				}
				for _, el := range s.preauth.adverts {
					if err := encodeElement(e, el, ""); err != nil {
						return false, err
					}
				}
				return false, nil
			},
			Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
				return false, nil, d.Skip()
			},
			Negotiate: func(ctx context.Context, xs *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
				return 0, nil, cc.preAuthExchange(ctx, xs, values)
			},
		})
	}
	return out
}

// preAuthExchange answers IQs until a handler sets Done. mellium goes on
// with negotiation after an optional feature failed, so a failure ends the
// stream here: the stream error is written and the connection closed, and
// mellium's next read fails.
func (cc *c2sConn) preAuthExchange(ctx context.Context, xs *xmpp.Session, values map[string]any) error {
	err := cc.preAuthLoop(ctx, xs, values)
	if err != nil {
		cc.fail(xs.Conn(), err, false)
	}
	return err
}

func (cc *c2sConn) preAuthLoop(ctx context.Context, xs *xmpp.Session, values map[string]any) error {
	tr := xs.TokenReader()
	defer tr.Close()
	// As in SASL2: a fresh decoder, so that text inside the IQs is not taken
	// for stream-level character data (see sasl2Negotiate).
	r := xml.NewTokenDecoder(tr)
	conn := xs.Conn()
	s := cc.srv
	for errs := 0; ; {
		el, err := nextElement(r)
		if err != nil {
			return err
		}
		if el.Name.Local != "iq" || (el.Name.Space != NSClient && el.Name.Space != "") {
			return fmt.Errorf("%w: <%s/> before the registration ended", stream.NotAuthorized, el.Name.Local)
		}
		typ := el.Get("type")
		reply := xmlel.New(NSClient, "iq", "type", "result", "id", el.Get("id"))
		var payload *xmlel.Element
		var h PreAuthIQHandler
		iq := &PreAuthIQ{Stanza: el, Payload: el.FirstElement(), Type: typ, RemoteIP: cc.sess.ip, Values: values}
		switch {
		case typ == "result" || typ == "error":
			continue // nothing of ours is pending
		case (typ != "get" && typ != "set") || iq.Payload == nil || len(el.Elements()) != 1:
			err = Errorf(ErrBadRequest, "an IQ request carries exactly one payload (RFC 6120 §8.2.3)")
		default:
			h = s.preauth.handlers[preAuthKey{typ: typ, name: iq.Payload.Name}]
			if h == nil {
				err = ErrServiceUnavailable
			} else {
				payload, err = h(ctx, iq)
			}
		}
		if err != nil {
			se := asStanzaError(err)
			if se == ErrInternal && iq.Payload != nil {
				cc.sess.log.Error("pre-authentication handler failed", "payload", iq.Payload.Name.Space, "err", err)
			}
			reply = ErrorReply(el, se)
			reply.Name.Space = NSClient
			errs++
		} else if payload != nil {
			reply.Add(payload)
		}
		if _, err := conn.Write(reply.Bytes(NSClient)); err != nil {
			return err
		}
		if errs >= MaxPreAuthErrors {
			cc.sess.log.Warn("too many failed pre-authentication requests", "errors", errs)
			return stream.PolicyViolation
		}
		if iq.Done && err == nil {
			return nil
		}
	}
}
