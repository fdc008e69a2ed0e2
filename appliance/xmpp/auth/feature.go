// Package auth implements server-side SASL authentication (RFC 6120 §6) for
// incoming client-to-server XMPP streams as a mellium.im/xmpp StreamFeature.
//
// Mechanisms: SCRAM-SHA-512-PLUS, SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS
// (RFC 5802, RFC 7677, with tls-exporter (RFC 9266) or tls-server-end-point
// (RFC 5929) channel binding), SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1 and
// PLAIN (RFC 4616). Supported channel-binding types are also announced with
// XEP-0440. Only stored SCRAM keys (Credential) are needed; PLAIN is checked
// against them.
//
// The exchanges themselves are independent of the SASL profile: an
// Authenticator (one per connection) runs a mechanism over a Transport that
// frames challenges and responses, and returns an Outcome. Feature frames
// them as RFC 6120 §6.4 (the classic <auth/>); the server package frames
// them as XEP-0388 SASL2 over the same Authenticator, which adds the
// XEP-0484 hashed-token mechanisms HT-SHA-256-NONE/-UNIQ/-ENDP/-EXPR
// (draft-schmaus-kitten-sasl-ht) when the caller supplies a TokenVerifier.
//
// Typical use, once per accepted TCP connection:
//
//	opts := auth.Options{Source: db, Domain: "example.org", Certificate: cert, ...}
//	sess, err := xmpp.ReceiveSession(ctx, conn, 0, xmpp.NewNegotiator(
//		func(s *xmpp.Session, _ *xmpp.StreamConfig) xmpp.StreamConfig {
//			o := opts
//			if s != nil {
//				o.TLSState = s.ConnectionState
//			}
//			return xmpp.StreamConfig{Features: []xmpp.StreamFeature{
//				xmpp.StartTLS(tlsConfig), auth.Feature(o), xmpp.BindResource(),
//			}}
//		}))
//	if errors.Is(err, auth.ErrTooManyFailures) {
//		// send <policy-violation/> stream error and close
//	}
package auth

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/xdg-go/scram"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
)

// XML namespaces.
const (
	// NSSASL is the SASL namespace of RFC 6120 §6.4.
	NSSASL = "urn:ietf:params:xml:ns:xmpp-sasl"
	// NSChannelBinding is the namespace of XEP-0440 (SASL Channel-Binding
	// Type Capability).
	NSChannelBinding = "urn:xmpp:sasl-cb:0"
)

// MaxFailures is the number of failed authentication attempts allowed on one
// stream (RFC 6120 §6.4.5). The Negotiate function of Feature returns an
// error wrapping ErrTooManyFailures after that many <failure/> replies.
const MaxFailures = 3

// maxPayload bounds the decoded size in bytes of one SASL message.
const maxPayload = 8192

// ErrTooManyFailures is returned (wrapped) by the feature's Negotiate, and
// thus by xmpp.ReceiveSession, once MaxFailures attempts have failed on one
// stream. The caller should then send a <policy-violation/> stream error
// (RFC 6120 §6.4.5, §4.9.3.14) and close the connection.
var ErrTooManyFailures = errors.New("auth: too many failed authentication attempts")

// ErrUnexpectedElement is returned (wrapped) by the feature's Negotiate when
// the client sends an element outside the SASL namespace during
// authentication. The caller should send a stream error (e.g.
// <not-authorized/>, RFC 6120 §4.9.3.12) and close the connection.
var ErrUnexpectedElement = errors.New("auth: unexpected element during SASL negotiation")

// SASL failure conditions (RFC 6120 §6.5).
const (
	condAborted            = "aborted"
	condCredentialsExpired = "credentials-expired"
	condIncorrectEncoding  = "incorrect-encoding"
	condInvalidAuthzID     = "invalid-authzid"
	condInvalidMechanism   = "invalid-mechanism"
	condMalformedRequest   = "malformed-request"
	condNotAuthorized      = "not-authorized"
	condTemporaryFailure   = "temporary-auth-failure"
)

// Options configures the SASL feature for one incoming c2s connection.
type Options struct {
	// Source looks up stored credentials. Required.
	Source CredentialSource

	// Domain is the XMPP domain served (e.g. "example.org"). An authzid, if
	// the client sends one, must be empty or the bare JID user@Domain of the
	// authenticating user, else the attempt fails with <invalid-authzid/>
	// (RFC 6120 §6.5.6). Required.
	Domain string

	// Certificate is our TLS leaf certificate. If set, and its signature
	// hash is defined for RFC 5929 §4.1 (SHA-256 for MD5/SHA-1 signatures,
	// otherwise the signature's own hash; not Ed25519), the
	// tls-server-end-point channel binding is offered. It must be the
	// certificate actually presented on this connection.
	Certificate *tls.Certificate

	// TLSState returns the TLS state of this connection. Set it to the
	// session's ConnectionState method in the xmpp.NewNegotiator callback
	// (see the package example): mellium's List callback gets no session, so
	// without it the feature cannot know whether channel binding is possible
	// and offers neither -PLUS mechanisms nor the XEP-0440 list. tls-exporter
	// (RFC 9266) is offered when the state shows TLS 1.3.
	TLSState func() tls.ConnectionState

	// Throttle limits failed logins per address and account; may be nil.
	Throttle *Throttle

	// RemoteIP is the client's address, used for throttling and logging.
	RemoteIP netip.Addr

	// OnSuccess, if set, is called by the classic feature (Feature) once
	// after successful authentication with the normalised localpart (PRECIS
	// UsernameCaseMapped) of the user, before the stream is restarted.
	// Authenticator.Authenticate does not call it: other profiles (SASL2)
	// act on the returned Outcome.
	OnSuccess func(username string)

	// Logger receives one record per failure (user and address, never
	// passwords or keys). nil means slog.Default().
	Logger *slog.Logger
}

type mechanism struct {
	name string
	hash string // "" for PLAIN
	plus bool
}

// mechanisms in order of preference.
var mechanisms = []mechanism{
	{"SCRAM-SHA-512-PLUS", HashSHA512, true},
	{"SCRAM-SHA-256-PLUS", HashSHA256, true},
	{"SCRAM-SHA-1-PLUS", HashSHA1, true},
	{"SCRAM-SHA-512", HashSHA512, false},
	{"SCRAM-SHA-256", HashSHA256, false},
	{"SCRAM-SHA-1", HashSHA1, false},
	{"PLAIN", "", false},
}

func scramHash(name string) scram.HashGeneratorFcn {
	switch name {
	case HashSHA1:
		return scram.SHA1
	case HashSHA256:
		return scram.SHA256
	default:
		return scram.SHA512
	}
}

// fakeSecret keys the deterministic fake salts handed out for unknown users.
var fakeSecret = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("auth: reading random secret: " + err.Error())
	}
	return b
}()

// Feature returns the SASL stream feature (RFC 6120 §6) for one incoming c2s
// connection. It is advertised only on a secure stream that is not yet
// authenticated (Necessary: xmpp.Secure, Prohibited: xmpp.Authn), is marked
// required, and is followed in the features list by the XEP-0440
// <sasl-channel-binding/> element whenever channel binding is offered.
//
// Negotiate handles the whole exchange including retries after <failure/>
// (RFC 6120 §6.4.5) within one call. On success it sends <success/> (with
// the SCRAM server-final-message as additional data), calls OnSuccess and
// returns mask xmpp.Authn together with the session's connection, which
// makes mellium restart the stream. It returns an error wrapping
// ErrTooManyFailures after MaxFailures failures, one wrapping
// ErrUnexpectedElement for non-SASL elements, or I/O errors.
//
// Feature panics if opts.Source is nil or opts.Domain is not a valid
// domainpart. It is NewAuthenticator(opts).Feature().
func Feature(opts Options) xmpp.StreamFeature {
	return NewAuthenticator(opts).Feature()
}

// Feature returns the classic SASL stream feature (RFC 6120 §6) running its
// exchanges through a; see the package-level Feature for its behaviour. The
// XEP-0388 feature of the server package uses the same Authenticator, so both
// offer the same mechanisms and share the throttle.
func (a *Authenticator) Feature() xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: NSSASL, Local: "mechanisms"},
		Necessary:  xmpp.Secure,
		Prohibited: xmpp.Authn,
		List:       a.list,
		Parse:      parseMechanisms,
		Negotiate:  a.negotiate,
	}
}

// list writes <mechanisms/> and, when channel binding is possible, the
// XEP-0440 <sasl-channel-binding/> feature after it.
func (a *Authenticator) list(ctx context.Context, e xmlstream.TokenWriter, start xml.StartElement) (bool, error) {
	cbs := a.bindingTypes(a.tlsState())
	if err := e.EncodeToken(start); err != nil {
		return true, err
	}
	mech := xml.StartElement{Name: xml.Name{Local: "mechanism"}}
	for _, m := range mechanisms {
		if m.plus && len(cbs) == 0 {
			continue
		}
		if err := writeElement(e, mech, m.name); err != nil {
			return true, err
		}
	}
	if err := e.EncodeToken(start.End()); err != nil {
		return true, err
	}
	if len(cbs) > 0 {
		// XEP-0440 is a sibling stream feature; it is written here because
		// only this feature knows the connection's binding types.
		cb := xml.StartElement{Name: xml.Name{Space: NSChannelBinding, Local: "sasl-channel-binding"}}
		if err := e.EncodeToken(cb); err != nil {
			return true, err
		}
		for _, t := range cbs {
			el := xml.StartElement{
				Name: xml.Name{Local: "channel-binding"},
				Attr: []xml.Attr{{Name: xml.Name{Local: "type"}, Value: string(t)}},
			}
			if err := writeElement(e, el, ""); err != nil {
				return true, err
			}
		}
		if err := e.EncodeToken(cb.End()); err != nil {
			return true, err
		}
	}
	return true, nil
}

func writeElement(e xmlstream.TokenWriter, start xml.StartElement, text string) error {
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	if text != "" {
		if err := e.EncodeToken(xml.CharData(text)); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// parseMechanisms is the client-side Parse; it returns the advertised
// mechanism names.
func parseMechanisms(_ context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
	var v struct {
		List []string `xml:"mechanism"`
	}
	err := d.DecodeElement(&v, start)
	return true, v.List, err
}

// sasl1 frames exchanges in the RFC 6120 §6.4 profile: <auth/>,
// <challenge/>, <response/>, <abort/>, <success/>, <failure/> in NSSASL.
type sasl1 struct {
	d *xml.Decoder
	w io.Writer
}

func (a *Authenticator) negotiate(ctx context.Context, session *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
	if session.State()&xmpp.Received == 0 {
		return 0, nil, errors.New("auth: the SASL feature is server-side only")
	}
	r := session.TokenReader()
	defer r.Close()
	conn := session.Conn()
	t := &sasl1{d: xml.NewTokenDecoder(r), w: conn}
	for failures := 0; ; {
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
		start, err := nextStart(t.d)
		if err != nil {
			return 0, nil, err
		}
		out, err := t.attempt(ctx, a, start)
		if err != nil {
			return 0, nil, err
		}
		if out.Success() {
			if a.opts.OnSuccess != nil {
				a.opts.OnSuccess(out.User)
			}
			return xmpp.Authn, conn, nil
		}
		failures++
		if failures >= MaxFailures {
			a.log.Warn("sasl: too many failures, closing stream", "ip", a.opts.RemoteIP, "failures", failures)
			return 0, nil, fmt.Errorf("%w (%d)", ErrTooManyFailures, failures)
		}
	}
}

// attempt runs one authentication exchange starting with start and writes
// its <success/> or <failure/>.
func (t *sasl1) attempt(ctx context.Context, a *Authenticator, start xml.StartElement) (Outcome, error) {
	el, err := t.readElement(start)
	if err != nil {
		return Outcome{}, err
	}
	var out Outcome
	switch start.Name.Local {
	case "auth":
		payload := strings.TrimSpace(el.Payload)
		out, err = a.Authenticate(ctx, Request{
			Mechanism:  el.Mechanism,
			Initial:    payload,
			HasInitial: payload != "", // RFC 6120 §6.4.2: "=" is an empty response
			Transport:  t,
		})
		if err != nil {
			return Outcome{}, err
		}
	case "abort":
		out = a.Reject(ctx, Request{}, ErrAborted)
	default:
		out = a.Reject(ctx, Request{}, fmt.Errorf("%w: unexpected <%s/>", ErrMalformedRequest, start.Name.Local))
	}
	if out.Success() {
		return out, t.send("success", out.AdditionalData)
	}
	_, err = fmt.Fprintf(t.w, "<failure xmlns='%s'><%s/></failure>", NSSASL, out.Condition)
	return out, err
}

// Challenge implements Transport.
func (t *sasl1) Challenge(data []byte) error { return t.send("challenge", data) }

// Response implements Transport.
func (t *sasl1) Response() ([]byte, error) {
	start, err := nextStart(t.d)
	if err != nil {
		return nil, err
	}
	el, err := t.readElement(start)
	if err != nil {
		return nil, err
	}
	switch start.Name.Local {
	case "abort":
		return nil, ErrAborted
	case "response":
	default:
		return nil, fmt.Errorf("%w: expected <response/>, got <%s/>", ErrMalformedRequest, start.Name.Local)
	}
	return DecodeBase64(el.Payload)
}

func (t *sasl1) send(local string, data []byte) error {
	if len(data) == 0 {
		_, err := fmt.Fprintf(t.w, "<%s xmlns='%s'/>", local, NSSASL)
		return err
	}
	_, err := fmt.Fprintf(t.w, "<%s xmlns='%s'>%s</%s>", local, NSSASL, base64.StdEncoding.EncodeToString(data), local)
	return err
}

// nextStart returns the next start element, skipping whitespace.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if len(strings.TrimLeft(string(t), " \t\r\n")) == 0 {
				continue
			}
		}
		return xml.StartElement{}, fmt.Errorf("%w: unexpected %T", ErrUnexpectedElement, tok)
	}
}

// saslElement is any of <auth/>, <response/>, <abort/>.
type saslElement struct {
	Mechanism string `xml:"mechanism,attr"`
	Payload   string `xml:",chardata"`
}

// readElement decodes the element started by start.
func (t *sasl1) readElement(start xml.StartElement) (saslElement, error) {
	var el saslElement
	if err := t.d.DecodeElement(&el, &start); err != nil {
		return el, err
	}
	if start.Name.Space != NSSASL {
		return el, fmt.Errorf("%w: <%s xmlns=%q>", ErrUnexpectedElement, start.Name.Local, start.Name.Space)
	}
	return el, nil
}
