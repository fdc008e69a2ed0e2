package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// Namespaces of the one-round-trip login extensions.
const (
	// NSSASL2 is XEP-0388 Extensible SASL Profile.
	NSSASL2 = "urn:xmpp:sasl:2"
	// NSBind2 is XEP-0386 Bind 2.
	NSBind2 = "urn:xmpp:bind:0"
	// NSFAST is XEP-0484 Fast Authentication Streamlining Tokens.
	NSFAST = "urn:xmpp:fast:0"
)

// FASTTokenLifetime is how long a XEP-0484 token stays valid after it was
// issued. A successful token login in the second half of that time gets a
// fresh token in <success/> (XEP-0484 §3.5 rotation).
const FASTTokenLifetime = 14 * 24 * time.Hour

const (
	nsBind = "urn:ietf:params:xml:ns:xmpp-bind"
	nsTLS  = "urn:ietf:params:xml:ns:xmpp-tls"

	// maxFASTTokens bounds the stored tokens per account (clients that make
	// up a new user-agent id on every login).
	maxFASTTokens = 64
	// maxAgentID bounds the XEP-0388 user-agent id we key tokens and
	// resources by (a UUID has 36 characters).
	maxAgentID = 128
	// maxTag bounds the part of a Bind 2 <tag/> kept in the resource.
	maxTag = 64
)

// Bind2InlineHandler enables a session feature that a client requested
// inline in its XEP-0386 Bind 2 request (for example <enable
// xmlns='urn:xmpp:carbons:2'/>, XEP-0280 §4). el is the request element, a
// child of <bind xmlns='urn:xmpp:bind:0'/>. The returned element, if not
// nil, is added to <bound/> in the SASL2 <success/> (XEP-0386 §3.2: "any
// defined responses to other enabled features").
//
// It runs during stream negotiation, after the session's resource was bound
// (sess.JID is final and the session is in the router) and before <success/>
// is written: the client has not sent presence yet and nothing written to
// the session reaches it before <success/>. It must not block.
type Bind2InlineHandler func(sess *Session, el *xmlel.Element) *xmlel.Element

// bind2Registry holds a server's Bind 2 inline handlers, registered before
// the first listener starts and read-only afterwards.
type bind2Registry struct {
	vars []string // advertised, in registration order
	fns  map[string]Bind2InlineHandler
}

// HandleBind2Inline registers fn for inline Bind 2 requests in namespace ns
// (XEP-0386 §3.2): ns is advertised as <feature var='ns'/> in the Bind 2
// <inline/> list of the SASL2 stream feature, and fn is called for each
// child of a client's <bind/> in that namespace. Feature modules call it
// when they register, before the first ListenC2S (e.g. the carbons module
// with "urn:xmpp:carbons:2"). A later registration for ns replaces the
// earlier one. Stream management (NSSM) and client state indication
// (NSCSI) are handled by the server itself; registering them, an empty ns
// or a nil fn panics.
func (s *Server) HandleBind2Inline(ns string, fn Bind2InlineHandler) {
	if ns == "" || fn == nil || ns == NSSM || ns == NSCSI || ns == NSBind2 {
		panic(fmt.Sprintf("server: HandleBind2Inline(%q): reserved namespace or nil handler", ns))
	}
	r := &s.bind2
	if r.fns == nil {
		r.fns = make(map[string]Bind2InlineHandler)
	}
	if _, ok := r.fns[ns]; !ok {
		r.vars = append(r.vars, ns)
	}
	r.fns[ns] = fn
}

// bind2Inline returns the advertised inline features (ours first) and the
// module handlers.
func (s *Server) bind2Inline() ([]string, map[string]Bind2InlineHandler) {
	vars := []string{NSSM, NSCSI}
	return append(vars, s.bind2.vars...), s.bind2.fns
}

// sasl2Feature is the XEP-0388 stream feature. It is offered beside the
// classic SASL feature on a secure, unauthenticated stream, with the same
// mechanisms (a is shared with it, and so are the channel bindings and the
// throttle), and advertises inline XEP-0198 resumption, XEP-0386 Bind 2 and
// XEP-0484 FAST.
//
// Negotiate runs attempts until one succeeds or auth.MaxFailures failed,
// like the classic feature. On success there is no stream restart
// (XEP-0388 §2.6.1): after a successful inline resumption the stream goes
// on at once (XEP-0198 §9.2, no stream features); after Bind 2 the server
// sends the post-bind stream features itself; both return Authn|Ready.
// Without either it returns Authn alone, and mellium sends fresh stream
// features (resource binding, stream management) on the same stream.
func (cc *c2sConn) sasl2Feature(a *auth.Authenticator) xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: NSSASL2, Local: "authentication"},
		Necessary:  xmpp.Secure,
		Prohibited: xmpp.Authn,
		List: func(ctx context.Context, e xmlstream.TokenWriter, start xml.StartElement) (bool, error) {
			return true, encodeElement(e, cc.sasl2Advert(a), "")
		},
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, xs *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
			return cc.sasl2Negotiate(ctx, xs, a)
		},
	}
}

// sasl2Advert is the <authentication/> stream feature (XEP-0388 §2.1).
func (cc *c2sConn) sasl2Advert(a *auth.Authenticator) *xmlel.Element {
	el := xmlel.New(NSSASL2, "authentication")
	for _, m := range a.Mechanisms() {
		el.Add(xmlel.New(NSSASL2, "mechanism").AddText(m))
	}
	inline := xmlel.New(NSSASL2, "inline")
	// XEP-0198 §9.2: resumption inline in <authenticate/>.
	inline.Add(xmlel.New(NSSM, "sm"))
	// XEP-0386 §3.1: Bind 2 with the features it can enable inline.
	vars, _ := cc.srv.bind2Inline()
	bi := xmlel.New(NSBind2, "inline")
	for _, v := range vars {
		bi.Add(xmlel.New(NSBind2, "feature", "var", v))
	}
	inline.Add(xmlel.New(NSBind2, "bind").Add(bi))
	// XEP-0484 §3.1: token mechanisms, channel-binding ones first.
	if hts := a.TokenMechanisms(); len(hts) > 0 {
		f := xmlel.New(NSFAST, "fast")
		for _, m := range hts {
			f.Add(xmlel.New(NSFAST, "mechanism").AddText(m))
		}
		inline.Add(f)
	}
	return el.Add(inline)
}

// encodeElement writes el as tokens; children in their parent's namespace
// inherit it instead of redeclaring it.
func encodeElement(e xmlstream.TokenWriter, el *xmlel.Element, parentNS string) error {
	start := xml.StartElement{Name: el.Name, Attr: el.Attr}
	if el.Name.Space == parentNS {
		start.Name.Space = ""
	}
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	for _, c := range el.Children {
		var err error
		switch n := c.(type) {
		case *xmlel.Element:
			err = encodeElement(e, n, el.Name.Space)
		case xmlel.Text:
			err = e.EncodeToken(xml.CharData(n))
		}
		if err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// sasl2Request is what a client asked for in <authenticate/>
// (XEP-0388 §2.3 and the inline extensions).
type sasl2Request struct {
	mechanism  string
	initial    string // base64
	hasInitial bool
	agent      string // <user-agent id/>, "" if absent or unusable
	software   string

	bind         *xmlel.Element // XEP-0386 <bind/>
	resume       *xmlel.Element // XEP-0198 <resume/>
	requestToken string         // XEP-0484 <request-token mechanism/>
	count        int64          // XEP-0484 <fast count/>: -1 absent, -2 invalid
	invalidate   bool           // XEP-0484 <fast invalidate/>

	used *store.FASTToken // the token that authenticated the client, if any
}

func parseAuthenticate(el *xmlel.Element) *sasl2Request {
	req := &sasl2Request{mechanism: el.Get("mechanism"), count: -1}
	if ir := el.Child(NSSASL2, "initial-response"); ir != nil {
		req.initial, req.hasInitial = ir.Text(), true
	}
	if ua := el.Child(NSSASL2, "user-agent"); ua != nil {
		if id := ua.Get("id"); len(id) <= maxAgentID && utf8.ValidString(id) {
			req.agent = id
		}
		req.software = ua.ChildText(NSSASL2, "software")
	}
	req.bind = el.Child(NSBind2, "bind")
	req.resume = el.Child(NSSM, "resume")
	if rt := el.Child(NSFAST, "request-token"); rt != nil {
		req.requestToken = rt.Get("mechanism")
	}
	if f := el.Child(NSFAST, "fast"); f != nil {
		if c := f.Get("count"); c != "" {
			n, err := strconv.ParseInt(c, 10, 64)
			if err != nil || n < 0 {
				n = -2
			}
			req.count = n
		}
		inv := f.Get("invalidate")
		req.invalidate = inv == "true" || inv == "1"
	}
	return req
}

// sasl2Transport frames challenges and responses in XEP-0388 §2.5.
type sasl2Transport struct {
	r xml.TokenReader
	w io.Writer
}

// Challenge implements auth.Transport.
func (t *sasl2Transport) Challenge(data []byte) error {
	el := xmlel.New(NSSASL2, "challenge")
	if len(data) > 0 {
		el.AddText(base64.StdEncoding.EncodeToString(data))
	}
	_, err := t.w.Write(el.Bytes(NSClient))
	return err
}

// Response implements auth.Transport.
func (t *sasl2Transport) Response() ([]byte, error) {
	el, err := nextElement(t.r)
	if err != nil {
		return nil, err
	}
	switch {
	case el.Name.Space != NSSASL2:
		return nil, fmt.Errorf("%w: <%s xmlns=%q>", auth.ErrUnexpectedElement, el.Name.Local, el.Name.Space)
	case el.Name.Local == "abort":
		return nil, auth.ErrAborted
	case el.Name.Local != "response":
		return nil, fmt.Errorf("%w: expected <response/>, got <%s/>", auth.ErrMalformedRequest, el.Name.Local)
	}
	return auth.DecodeBase64(el.Text())
}

// sasl2FailureText is the human-readable <text/> per condition; it never
// says more than the condition does.
var sasl2FailureText = map[string]string{
	"aborted":                "Authentication aborted",
	"credentials-expired":    "The token has expired; log in with your password",
	"incorrect-encoding":     "Invalid base64 data",
	"invalid-authzid":        "Not allowed to act as that identity",
	"invalid-mechanism":      "Mechanism not offered",
	"malformed-request":      "Malformed request",
	"not-authorized":         "Authentication failed",
	"temporary-auth-failure": "Try again later",
}

func (cc *c2sConn) sasl2Negotiate(ctx context.Context, xs *xmpp.Session, a *auth.Authenticator) (xmpp.SessionState, io.ReadWriter, error) {
	tr := xs.TokenReader()
	defer tr.Close()
	// The element mellium pushed back is not counted by its stream-level
	// reader, which thus flags text in a later top-level element
	// (<response/>) as stream-level character data, returning it with an
	// error; xml.Decoder passes on tokens returned with an error.
	r := xml.NewTokenDecoder(tr)
	conn := xs.Conn()
	t := &sasl2Transport{r: r, w: conn}
	for failures := 0; ; {
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
		el, err := nextElement(r)
		if err != nil {
			return 0, nil, err
		}
		if el.Name.Space != NSSASL2 {
			return 0, nil, fmt.Errorf("%w: <%s xmlns=%q>", auth.ErrUnexpectedElement, el.Name.Local, el.Name.Space)
		}
		var (
			out auth.Outcome
			req *sasl2Request
		)
		switch el.Name.Local {
		case "authenticate":
			req = parseAuthenticate(el)
			out, err = a.Authenticate(ctx, auth.Request{
				Mechanism:  req.mechanism,
				Initial:    req.initial,
				HasInitial: req.hasInitial,
				Transport:  t,
				Tokens:     cc.fastVerifier(req),
			})
			if err != nil {
				return 0, nil, err
			}
		case "abort":
			out = a.Reject(ctx, auth.Request{}, auth.ErrAborted)
		default:
			out = a.Reject(ctx, auth.Request{}, fmt.Errorf("%w: unexpected <%s/>", auth.ErrMalformedRequest, el.Name.Local))
		}
		if out.Success() {
			return cc.sasl2Success(ctx, xs, a, req, out)
		}
		// XEP-0388 §2.6.2: inline requests of a failed attempt are ignored.
		f := xmlel.New(NSSASL2, "failure").Add(xmlel.New(auth.NSSASL, out.Condition))
		if text := sasl2FailureText[out.Condition]; text != "" {
			f.Add(xmlel.New(NSSASL2, "text").AddText(text))
		}
		if _, err := conn.Write(f.Bytes(NSClient)); err != nil {
			return 0, nil, err
		}
		failures++
		if failures >= auth.MaxFailures {
			cc.sess.log.Warn("sasl2: too many failures, closing stream", "failures", failures)
			return 0, nil, fmt.Errorf("%w (%d)", auth.ErrTooManyFailures, failures)
		}
	}
}

// sasl2Success processes the inline requests of a successful attempt in the
// order XEP-0386 §3.2 and XEP-0198 §9.2 prescribe (resumption, else Bind 2;
// then FAST), and writes <success/>.
func (cc *c2sConn) sasl2Success(ctx context.Context, xs *xmpp.Session, a *auth.Authenticator, req *sasl2Request, out auth.Outcome) (xmpp.SessionState, io.ReadWriter, error) {
	cc.username = out.User
	log := cc.sess.log.With("user", out.User)
	if req.software != "" {
		// The device name stays private (XEP-0388 §2.3).
		log.Debug("sasl2: client", "software", req.software, "agent_id", req.agent != "")
	}
	conn := xs.Conn()
	success := xmlel.New(NSSASL2, "success")
	if out.AdditionalData != nil {
		success.Add(xmlel.New(NSSASL2, "additional-data").AddText(base64.StdEncoding.EncodeToString(out.AdditionalData)))
	}
	authzid := xmlel.New(NSSASL2, "authorization-identifier")
	success.Add(authzid)

	var smResult *xmlel.Element
	if req.resume != nil {
		reply, se := cc.takeOver(conn, req.resume)
		if se != nil {
			// 'h' acknowledges more than was sent: refuse the resumption
			// (the stream error of XEP-0198 §4 would end this new stream).
			log.Info("inline resumption refused", "reason", se.text)
			reply = smFailed("unexpected-request", se.text)
		}
		smResult = reply
	}
	var bound *xmlel.Element
	if cc.resumed == nil && req.bind != nil {
		bound = cc.bind2(req)
	}
	token := cc.fastToken(ctx, a, req, out)

	switch {
	case cc.resumed != nil:
		authzid.AddText(cc.resumed.jid.String())
	case bound != nil:
		authzid.AddText(cc.sess.jid.String())
	default:
		authzid.AddText(cc.username + "@" + cc.srv.domain.String())
	}
	for _, el := range []*xmlel.Element{smResult, bound, token} {
		if el != nil {
			success.Add(el)
		}
	}
	buf := success.Bytes(NSClient)
	mask := xmpp.Authn
	if cc.resumed != nil || bound != nil {
		mask |= xmpp.Ready
	}
	if bound != nil {
		// XEP-0388 §2.6.1: <success/> is followed by the features of the
		// authenticated stream; after Bind 2 those are the post-bind ones,
		// which mellium will not list since negotiation ends here.
		buf = append(buf, cc.boundFeatures(ctx, xs)...)
	}
	if _, err := conn.Write(buf); err != nil {
		switch {
		case cc.resumed != nil:
			cc.abandonTakeOver(conn)
		case bound != nil:
			cc.srv.endSession(context.Background(), cc.sess)
		}
		return 0, nil, err
	}
	if cc.resumed != nil {
		cc.resumed.log.Info("session resumed (SASL2)", "ip", cc.sess.ip.String())
	}
	return mask, nil, nil
}

// bind2 binds a resource for a XEP-0386 request and enables what the client
// asked for inline; it returns <bound/>, or nil if binding failed (the
// client then gets the classic bind feature).
func (cc *c2sConn) bind2(req *sasl2Request) *xmlel.Element {
	s := cc.srv
	sess := cc.sess
	bound := xmlel.New(NSBind2, "bound")
	// Stream management goes on before the session is visible in the
	// router, so that every stanza routed to it is counted: the client
	// counts from <success/>, which is written before anything queued.
	var smEnabled bool
	if en := req.bind.Child(NSSM, "enable"); en != nil {
		resume := en.Get("resume") == "true" || en.Get("resume") == "1"
		reply, _ := s.enableSM(sess, resume, false)
		bound.Add(reply)
		smEnabled = true
	}
	resource := bind2Resource(cc.username, req.bind.ChildText(NSBind2, "tag"), req.agent)
	if _, err := cc.bind(jid.JID{}, resource); err != nil {
		cc.sess.log.Warn("bind2: binding failed", "err", err)
		if smEnabled {
			cc.disableSM()
		}
		return nil
	}
	_, handlers := s.bind2Inline()
	for _, el := range req.bind.Elements() {
		switch el.Name.Space {
		case NSBind2, NSSM:
		case NSCSI:
			s.handleCSI(sess, el)
		default:
			// Requests for features not advertised are ignored.
			if fn := handlers[el.Name.Space]; fn != nil {
				if r := fn(sess, el); r != nil {
					bound.Add(r)
				}
			}
		}
	}
	sess.log.Debug("resource bound inline (Bind 2)", "jid", sess.jid.String())
	return bound
}

// disableSM undoes enableSM on the negotiating session.
func (cc *c2sConn) disableSM() {
	sess := cc.sess
	sess.outMu.Lock()
	sm := sess.sm
	sess.sm = nil
	sess.outMu.Unlock()
	if sm != nil && sm.id != "" {
		cc.srv.smMu.Lock()
		if cc.srv.smIndex[sm.id] == sess {
			delete(cc.srv.smIndex, sm.id)
		}
		cc.srv.smMu.Unlock()
	}
}

// bind2Resource generates the resource of a Bind 2 session (XEP-0386 §3.2.1):
// the client's tag, a dot and 8 hex digits. The digits are derived from the
// account, the tag and the SASL2 user-agent id, so the same client
// installation gets the same resource on every login (and replaces its own
// stale session, XEP-0386 §3.2), without the id itself being visible in the
// JID; without an id they are random. An unusable tag is dropped.
func bind2Resource(username, tag, agent string) string {
	tag = strings.TrimSpace(tag)
	for len(tag) > maxTag || !utf8.ValidString(tag) {
		_, size := utf8.DecodeLastRuneInString(tag)
		tag = tag[:len(tag)-size]
	}
	var suffix string
	if agent != "" {
		h := sha256.Sum256([]byte("hearth bind2 resource\x00" + username + "\x00" + tag + "\x00" + agent))
		suffix = hex.EncodeToString(h[:4])
	} else {
		suffix = randomID(4)
	}
	if tag == "" {
		return suffix
	}
	if _, err := jid.New("x", "example.org", tag+"."+suffix); err != nil {
		return suffix
	}
	return tag + "." + suffix
}

// boundFeatures is the <stream:features/> sent after a Bind 2 login: the
// informational features of a bound stream (those of streamConfig that are
// neither authentication nor binding), plus stream management if it was
// not enabled inline.
func (cc *c2sConn) boundFeatures(ctx context.Context, xs *xmpp.Session) []byte {
	var buf bytes.Buffer
	buf.WriteString("<stream:features>")
	enc := xml.NewEncoder(&buf)
	state := xs.State() | xmpp.Authn
	for _, f := range cc.streamConfig(xs, nil).Features {
		switch f.Name.Space {
		case nsTLS, auth.NSSASL, NSSASL2, nsBind, NSSM:
			continue
		}
		if state&f.Necessary != f.Necessary || state&f.Prohibited != 0 || f.List == nil {
			continue
		}
		if _, err := f.List(ctx, enc, xml.StartElement{Name: f.Name}); err != nil {
			cc.sess.log.Warn("listing stream feature failed", "feature", f.Name.Space, "err", err)
		}
	}
	enc.Flush()
	cc.sess.outMu.Lock()
	sm := cc.sess.sm != nil
	cc.sess.outMu.Unlock()
	if !sm {
		buf.WriteString("<sm xmlns='urn:xmpp:sm:3'/>")
	}
	buf.WriteString("</stream:features>")
	return buf.Bytes()
}

// fastVerifier checks XEP-0484 token logins against the tokens stored for
// the account, the client's user-agent id and the mechanism (XEP-0484 §3.4,
// §5.1: the 'new' slot first, then 'current'), enforcing expiry and the
// replay counter. It records the token used in req.
func (cc *c2sConn) fastVerifier(req *sasl2Request) auth.TokenVerifier {
	return func(ctx context.Context, username, mechanism string, match func(key []byte) bool) ([]byte, error) {
		switch {
		case req.agent == "":
			return nil, fmt.Errorf("%w: token login without user-agent id", auth.ErrUnknownUser)
		case req.count == -2:
			return nil, fmt.Errorf("%w: invalid count", auth.ErrUnknownUser)
		}
		st := cc.srv.store
		toks, err := st.FASTTokens(ctx, username, req.agent, mechanism)
		if err != nil {
			return nil, err
		}
		now := cc.srv.now()
		expired := false
		for _, t := range toks {
			if !match(t.Key) {
				continue
			}
			if !now.Before(t.Expires) {
				expired = true
				continue
			}
			switch err := st.UseFASTToken(ctx, username, t, req.count); {
			case errors.Is(err, store.ErrFASTReplay):
				return nil, fmt.Errorf("%w: %v", auth.ErrUnknownUser, err)
			case errors.Is(err, store.ErrNotFound):
				continue // invalidated meanwhile
			case err != nil:
				return nil, err
			}
			req.used = &t
			return t.Key, nil
		}
		if expired {
			return nil, auth.ErrCredentialsExpired
		}
		return nil, auth.ErrUnknownUser
	}
}

// fastToken applies XEP-0484 after a successful login: it invalidates the
// token used if the client asked (§3.6), and issues a token when the client
// requested one (§3.2) or its token is due for rotation (§3.5). It returns
// the <token/> for <success/>, or nil.
func (cc *c2sConn) fastToken(ctx context.Context, a *auth.Authenticator, req *sasl2Request, out auth.Outcome) *xmlel.Element {
	st := cc.srv.store
	log := cc.sess.log.With("user", out.User)
	now := cc.srv.now()
	if req.used != nil && req.invalidate {
		if err := st.DeleteFASTAgentTokens(ctx, out.User, req.agent); err != nil {
			log.Warn("fast: invalidating token failed", "err", err)
		} else {
			log.Info("fast: token invalidated by the client")
		}
	}
	var mech string
	switch {
	case req.requestToken != "":
		if !slices.Contains(a.TokenMechanisms(), req.requestToken) {
			log.Info("fast: token requested for a mechanism not offered", "mechanism", req.requestToken)
			return nil
		}
		mech = req.requestToken
	case req.used != nil && !req.invalidate && req.used.Expires.Sub(now) < FASTTokenLifetime/2:
		mech = req.used.Mechanism
	default:
		return nil
	}
	if req.agent == "" {
		log.Info("fast: token requested without user-agent id")
		return nil
	}
	token, key := auth.NewToken()
	expires := now.Add(FASTTokenLifetime).UTC().Truncate(time.Second)
	err := st.PutFASTToken(ctx, out.User, store.FASTToken{Agent: req.agent, Mechanism: mech, Key: key, Expires: expires}, maxFASTTokens)
	if err != nil {
		log.Warn("fast: storing token failed", "err", err)
		return nil
	}
	log.Info("fast: token issued", "mechanism", mech, "expires", expires)
	return xmlel.New(NSFAST, "token", "expiry", expires.Format(time.RFC3339), "token", token)
}
