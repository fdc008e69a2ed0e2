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
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/xdg-go/scram"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
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
	condAborted           = "aborted"
	condIncorrectEncoding = "incorrect-encoding"
	condInvalidAuthzID    = "invalid-authzid"
	condInvalidMechanism  = "invalid-mechanism"
	condMalformedRequest  = "malformed-request"
	condNotAuthorized     = "not-authorized"
	condTemporaryFailure  = "temporary-auth-failure"
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

	// OnSuccess, if set, is called once after successful authentication with
	// the normalised localpart (PRECIS UsernameCaseMapped) of the user,
	// before the stream is restarted.
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

type feature struct {
	opts     Options
	domain   string // normalised domainpart
	endpoint []byte // tls-server-end-point binding data, nil if unavailable
	log      *slog.Logger
}

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
// domainpart.
func Feature(opts Options) xmpp.StreamFeature {
	if opts.Source == nil {
		panic("auth: Options.Source is nil")
	}
	d, err := jid.New("", opts.Domain, "")
	if err != nil || opts.Domain == "" {
		panic(fmt.Sprintf("auth: invalid Options.Domain %q", opts.Domain))
	}
	f := &feature{opts: opts, domain: d.Domainpart(), log: opts.Logger}
	if f.log == nil {
		f.log = slog.Default()
	}
	if opts.Certificate != nil {
		f.endpoint = serverEndPoint(opts.Certificate)
	}
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: NSSASL, Local: "mechanisms"},
		Necessary:  xmpp.Secure,
		Prohibited: xmpp.Authn,
		List:       f.list,
		Parse:      parseMechanisms,
		Negotiate:  f.negotiate,
	}
}

// serverEndPoint computes the tls-server-end-point channel binding data
// (RFC 5929 §4.1) for our certificate, or nil if it is undefined.
func serverEndPoint(cert *tls.Certificate) []byte {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return nil
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil
		}
	}
	var h hash.Hash
	switch leaf.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil
	}
	h.Write(leaf.Raw)
	return h.Sum(nil)
}

// bindingTypes lists the channel-binding types usable on a connection, in
// order of preference.
func (f *feature) bindingTypes(cs tls.ConnectionState) []scram.ChannelBindingType {
	if cs.Version == 0 || !cs.HandshakeComplete {
		return nil
	}
	var types []scram.ChannelBindingType
	if cs.Version >= tls.VersionTLS13 {
		types = append(types, scram.ChannelBindingTLSExporter)
	}
	if f.endpoint != nil {
		types = append(types, scram.ChannelBindingTLSServerEndpoint)
	}
	return types
}

func (f *feature) bindingData(cs tls.ConnectionState, typ scram.ChannelBindingType) (scram.ChannelBinding, error) {
	switch typ {
	case scram.ChannelBindingTLSExporter:
		return scram.NewTLSExporterBinding(&cs)
	case scram.ChannelBindingTLSServerEndpoint:
		return scram.ChannelBinding{Type: typ, Data: f.endpoint}, nil
	}
	return scram.ChannelBinding{}, fmt.Errorf("auth: unsupported channel binding %q", typ)
}

func (f *feature) tlsState() tls.ConnectionState {
	if f.opts.TLSState == nil {
		return tls.ConnectionState{}
	}
	return f.opts.TLSState()
}

func (f *feature) list(ctx context.Context, e xmlstream.TokenWriter, start xml.StartElement) (bool, error) {
	cbs := f.bindingTypes(f.tlsState())
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

// conv is the state of one Negotiate call.
type conv struct {
	f       *feature
	ctx     context.Context
	d       *xml.Decoder
	w       io.Writer
	cs      tls.ConnectionState
	cbTypes []scram.ChannelBindingType
}

func (f *feature) negotiate(ctx context.Context, session *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
	if session.State()&xmpp.Received == 0 {
		return 0, nil, errors.New("auth: the SASL feature is server-side only")
	}
	r := session.TokenReader()
	defer r.Close()
	conn := session.Conn()
	c := &conv{f: f, ctx: ctx, d: xml.NewTokenDecoder(r), w: conn}
	if f.opts.TLSState != nil {
		// Must agree with what list advertised.
		c.cs = session.ConnectionState()
		c.cbTypes = f.bindingTypes(c.cs)
	}
	for failures := 0; ; {
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
		start, err := nextStart(c.d)
		if err != nil {
			return 0, nil, err
		}
		user, failed, err := c.attempt(start)
		if err != nil {
			return 0, nil, err
		}
		if !failed {
			f.log.Info("sasl: authenticated", "user", user, "ip", f.opts.RemoteIP)
			if f.opts.OnSuccess != nil {
				f.opts.OnSuccess(user)
			}
			return xmpp.Authn, conn, nil
		}
		failures++
		if failures >= MaxFailures {
			f.log.Warn("sasl: too many failures, closing stream", "ip", f.opts.RemoteIP, "failures", failures)
			return 0, nil, fmt.Errorf("%w (%d)", ErrTooManyFailures, failures)
		}
	}
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
func (c *conv) readElement(start xml.StartElement) (saslElement, error) {
	var el saslElement
	if err := c.d.DecodeElement(&el, &start); err != nil {
		return el, err
	}
	if start.Name.Space != NSSASL {
		return el, fmt.Errorf("%w: <%s xmlns=%q>", ErrUnexpectedElement, start.Name.Local, start.Name.Space)
	}
	return el, nil
}

// decodePayload decodes the base64 content of a SASL element (RFC 6120
// §6.4.2); "=" and "" both mean an empty payload.
func decodePayload(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) > maxPayload {
		return nil, false
	}
	return b, true
}

// failure describes a failed attempt.
type failure struct {
	cond   string
	user   string // normalised username if known
	mech   string
	reason string // for the log only
	record bool   // count in the Throttle
}

// fail sends <failure/> and logs it.
func (c *conv) fail(fl failure) (string, bool, error) {
	level := slog.LevelInfo
	if fl.cond == condTemporaryFailure {
		level = slog.LevelWarn
	}
	c.f.log.Log(c.ctx, level, "sasl: authentication failed",
		"condition", fl.cond, "mechanism", fl.mech, "user", fl.user,
		"ip", c.f.opts.RemoteIP, "reason", fl.reason)
	if fl.record {
		c.f.opts.Throttle.RecordFailure(c.f.opts.RemoteIP, fl.user)
	}
	_, err := fmt.Fprintf(c.w, "<failure xmlns='%s'><%s/></failure>", NSSASL, fl.cond)
	return "", true, err
}

func (c *conv) send(local string, data []byte) error {
	if len(data) == 0 {
		_, err := fmt.Fprintf(c.w, "<%s xmlns='%s'/>", local, NSSASL)
		return err
	}
	_, err := fmt.Fprintf(c.w, "<%s xmlns='%s'>%s</%s>", local, NSSASL, base64.StdEncoding.EncodeToString(data), local)
	return err
}

// readResponse reads the client's next <response/>. If the client aborts or
// sends something invalid, it returns the failure to send.
func (c *conv) readResponse(mech, user string) ([]byte, *failure, error) {
	start, err := nextStart(c.d)
	if err != nil {
		return nil, nil, err
	}
	el, err := c.readElement(start)
	if err != nil {
		return nil, nil, err
	}
	switch start.Name.Local {
	case "abort":
		return nil, &failure{cond: condAborted, mech: mech, user: user, reason: "client aborted"}, nil
	case "response":
	default:
		return nil, &failure{cond: condMalformedRequest, mech: mech, user: user, reason: "expected <response/>, got <" + start.Name.Local + "/>", record: true}, nil
	}
	data, ok := decodePayload(el.Payload)
	if !ok {
		return nil, &failure{cond: condIncorrectEncoding, mech: mech, user: user, reason: "bad base64", record: true}, nil
	}
	return data, nil, nil
}

// attempt runs one authentication exchange starting with start. It returns
// failed=false and the username after sending <success/>; failed=true after
// sending <failure/>; or an error if the stream cannot continue.
func (c *conv) attempt(start xml.StartElement) (user string, failed bool, err error) {
	el, err := c.readElement(start)
	if err != nil {
		return "", false, err
	}
	switch start.Name.Local {
	case "auth":
	case "abort":
		return c.fail(failure{cond: condAborted, reason: "client aborted"})
	default:
		return c.fail(failure{cond: condMalformedRequest, reason: "unexpected <" + start.Name.Local + "/>", record: true})
	}
	idx := slices.IndexFunc(mechanisms, func(m mechanism) bool { return m.name == el.Mechanism })
	if idx < 0 || (mechanisms[idx].plus && len(c.cbTypes) == 0) {
		return c.fail(failure{cond: condInvalidMechanism, mech: el.Mechanism, reason: "mechanism not offered", record: true})
	}
	m := mechanisms[idx]
	if !c.f.opts.Throttle.Allow(c.f.opts.RemoteIP, "") {
		return c.fail(failure{cond: condTemporaryFailure, mech: m.name, reason: "address throttled"})
	}
	initial, ok := decodePayload(el.Payload)
	if !ok {
		return c.fail(failure{cond: condIncorrectEncoding, mech: m.name, reason: "bad base64", record: true})
	}
	if strings.TrimSpace(el.Payload) == "" {
		// No initial response: send an empty challenge (RFC 6120 §6.4.2).
		if err := c.send("challenge", nil); err != nil {
			return "", false, err
		}
		var fl *failure
		initial, fl, err = c.readResponse(m.name, "")
		if err != nil {
			return "", false, err
		}
		if fl != nil {
			return c.fail(*fl)
		}
	}
	if m.hash == "" {
		return c.plain(initial)
	}
	return c.scram(m, initial)
}

// normaliseUsername applies the JID localpart rules (PRECIS
// UsernameCaseMapped, RFC 8265 §3.3, plus RFC 7622 §3.3.1 exclusions).
func (c *conv) normaliseUsername(raw string) (string, bool) {
	if raw == "" || !utf8.ValidString(raw) {
		return "", false
	}
	j, err := jid.New(raw, c.f.domain, "")
	if err != nil || j.Localpart() == "" {
		return "", false
	}
	return j.Localpart(), true
}

// authzOK checks an authorization identity (RFC 6120 §6.3.8): it must be
// empty or the bare JID of the authenticated user.
func (c *conv) authzOK(authzid, user string) bool {
	if authzid == "" {
		return true
	}
	j, err := jid.Parse(authzid)
	if err != nil {
		return false
	}
	want, err := jid.New(user, c.f.domain, "")
	return err == nil && j.Equal(want)
}

// credential looks up user's credential for hash. For unknown or invalid
// users it returns a fake credential (fake=true) so the exchange proceeds
// and fails like a wrong password.
func (c *conv) credential(user, hashName string) (cred Credential, fake bool, err error) {
	if user != "" {
		cred, err = c.f.opts.Source.Credential(c.ctx, user, hashName)
		switch {
		case err == nil:
			if verr := cred.validate(); verr != nil {
				return Credential{}, false, verr
			}
			if cred.Hash != hashName {
				return Credential{}, false, fmt.Errorf("auth: asked for %s credential, got %s", hashName, cred.Hash)
			}
			return cred, false, nil
		case !errors.Is(err, ErrUnknownUser):
			return Credential{}, false, err
		}
	}
	return fakeCredential(user, hashName), true, nil
}

// fakeCredential returns a credential nobody can authenticate against, with
// a salt that is stable for (user, hash) during the life of the process and
// DefaultIterations, so an unknown user looks like a known one.
func fakeCredential(user, hashName string) Credential {
	mac := hmac.New(sha256.New, fakeSecret)
	mac.Write([]byte(hashName))
	mac.Write([]byte{0})
	mac.Write([]byte(user))
	salt := mac.Sum(nil)[:saltSize]
	_, size, _ := hashInfo(hashName)
	keys := make([]byte, 2*size)
	_, _ = rand.Read(keys)
	return Credential{Hash: hashName, Salt: salt, Iterations: DefaultIterations, StoredKey: keys[:size], ServerKey: keys[size:]}
}

// plain handles SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
func (c *conv) plain(msg []byte) (string, bool, error) {
	const mech = "PLAIN"
	parts := strings.Split(string(msg), "\x00")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" || !utf8.Valid(msg) {
		return c.fail(failure{cond: condMalformedRequest, mech: mech, reason: "malformed PLAIN message", record: true})
	}
	authzid, authcid, password := parts[0], parts[1], parts[2]
	user, valid := c.normaliseUsername(authcid)
	if valid && !c.f.opts.Throttle.Allow(netip.Addr{}, user) {
		return c.fail(failure{cond: condTemporaryFailure, mech: mech, user: user, reason: "account throttled"})
	}
	if valid && !c.authzOK(authzid, user) {
		return c.fail(failure{cond: condInvalidAuthzID, mech: mech, user: user, reason: "authzid not permitted", record: true})
	}
	var cred Credential
	fake := true
	if valid {
		// Prefer the SHA-256 key, fall back to the others if it is absent.
		for _, h := range []string{HashSHA256, HashSHA512, HashSHA1} {
			cr, fk, err := c.credential(user, h)
			if err != nil {
				return c.fail(failure{cond: condTemporaryFailure, mech: mech, user: user, reason: "credential lookup: " + err.Error()})
			}
			if !fk {
				cred, fake = cr, false
				break
			}
		}
	}
	if fake {
		cred = fakeCredential(authcid, HashSHA256)
	}
	// Always run the PBKDF2 check, also for unknown users, so both cases
	// take about the same time.
	ok := VerifyPassword(cred, password)
	if !ok || fake || !valid {
		reason := "wrong password"
		if fake {
			reason = "unknown user"
		}
		return c.fail(failure{cond: condNotAuthorized, mech: mech, user: user, reason: reason, record: true})
	}
	if err := c.send("success", nil); err != nil {
		return "", false, err
	}
	return user, false, nil
}

var errThrottled = errors.New("auth: account throttled")

// scram handles the SCRAM family (RFC 5802, RFC 7677) including -PLUS.
func (c *conv) scram(m mechanism, msg []byte) (string, bool, error) {
	// Check the GS2 header ourselves: the library accepts only one channel
	// binding per conversation, and we may offer two.
	flag, _, found := strings.Cut(string(msg), ",")
	if !found {
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "no GS2 header", record: true})
	}
	var cb scram.ChannelBinding
	switch {
	case flag == "n" || flag == "y":
		if m.plus {
			return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "-PLUS mechanism without channel binding", record: true})
		}
		if flag == "y" && len(c.cbTypes) > 0 {
			// RFC 5802 §6: the client thinks we do not support channel
			// binding, but we advertised it: possible downgrade attack.
			return c.fail(failure{cond: condNotAuthorized, mech: m.name, reason: "channel binding downgrade (gs2 flag y)", record: true})
		}
	case strings.HasPrefix(flag, "p="):
		typ := scram.ChannelBindingType(flag[2:])
		if !m.plus {
			return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "channel binding with non-PLUS mechanism", record: true})
		}
		if !slices.Contains(c.cbTypes, typ) {
			return c.fail(failure{cond: condNotAuthorized, mech: m.name, reason: "unsupported channel binding type " + string(typ), record: false}) // a client limitation, not a password guess: not throttled
		}
		var err error
		if cb, err = c.f.bindingData(c.cs, typ); err != nil || !cb.IsSupported() {
			return c.fail(failure{cond: condTemporaryFailure, mech: m.name, reason: fmt.Sprintf("channel binding data: %v", err)})
		}
	default:
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "bad GS2 flag", record: true})
	}

	var (
		user      string
		valid     bool
		fake      bool
		lookupErr error
	)
	srv, err := scramHash(m.hash).NewServer(func(raw string) (scram.StoredCredentials, error) {
		user, valid = c.normaliseUsername(raw)
		if valid && !c.f.opts.Throttle.Allow(netip.Addr{}, user) {
			lookupErr = errThrottled
			return scram.StoredCredentials{}, lookupErr
		}
		var cred Credential
		if valid {
			cred, fake, lookupErr = c.credential(user, m.hash)
		} else {
			cred, fake = fakeCredential(raw, m.hash), true
		}
		if lookupErr != nil {
			return scram.StoredCredentials{}, lookupErr
		}
		return scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(cred.Salt), Iters: cred.Iterations},
			StoredKey:  cred.StoredKey,
			ServerKey:  cred.ServerKey,
		}, nil
	})
	if err != nil {
		return "", false, err
	}
	var sc *scram.ServerConversation
	if m.plus {
		sc = srv.NewConversationWithChannelBindingRequired(cb)
	} else {
		sc = srv.NewConversation()
	}
	serverFirst, err := sc.Step(string(msg))
	switch {
	case errors.Is(lookupErr, errThrottled):
		return c.fail(failure{cond: condTemporaryFailure, mech: m.name, user: user, reason: "account throttled"})
	case lookupErr != nil:
		return c.fail(failure{cond: condTemporaryFailure, mech: m.name, user: user, reason: "credential lookup: " + lookupErr.Error()})
	case err != nil:
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, user: user, reason: "client-first-message: " + err.Error(), record: true})
	}
	if valid && !c.authzOK(sc.AuthzID(), user) {
		return c.fail(failure{cond: condInvalidAuthzID, mech: m.name, user: user, reason: "authzid not permitted", record: true})
	}
	if err := c.send("challenge", []byte(serverFirst)); err != nil {
		return "", false, err
	}
	resp, fl, err := c.readResponse(m.name, user)
	if err != nil {
		return "", false, err
	}
	if fl != nil {
		return c.fail(*fl)
	}
	serverFinal, err := sc.Step(string(resp))
	switch {
	case err != nil && serverFinal == "":
		// Syntax error; checked before the proof, so it does not depend on
		// whether the user exists.
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, user: user, reason: "client-final-message: " + err.Error(), record: true})
	case err != nil || !sc.Valid() || fake || !valid:
		reason := "wrong password"
		switch {
		case serverFinal == scram.ErrChannelBindingsDontMatch:
			reason = "channel binding mismatch"
		case fake:
			reason = "unknown user"
		case serverFinal != scram.ErrInvalidProof && err != nil:
			reason = err.Error()
		}
		return c.fail(failure{cond: condNotAuthorized, mech: m.name, user: user, reason: reason, record: true})
	}
	if err := c.send("success", []byte(serverFinal)); err != nil {
		return "", false, err
	}
	return user, false, nil
}
