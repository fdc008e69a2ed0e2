package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

var streamSystemShutdown = stream.SystemShutdown

// c2sConn is the negotiation-time state of one client connection.
type c2sConn struct {
	srv        *Server
	sess       *Session
	username   string   // set by SASL
	resumed    *Session // set when the stream resumed an earlier session (XEP-0198 §5)
	headerSent bool     // our stream header for the current stream is out
	hostErr    bool
}

// serveC2S runs one client connection from accept to close.
func (s *Server) serveC2S(ctx context.Context, raw net.Conn, directTLS bool) {
	ip := remoteIP(raw)
	log := s.log.With("ip", ip.String())
	if !s.conns.acquire(ip, s.limits.MaxConnsPerIP) {
		log.Warn("too many connections from address", "limit", s.limits.MaxConnsPerIP)
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		var c net.Conn = raw
		if directTLS {
			c = tls.Server(raw, s.tlsDirect)
		}
		c.Write(s.streamHeader())
		c.Write(newStreamError(stream.PolicyViolation, "too many connections from your address").bytes())
		c.Close()
		return
	}
	defer s.conns.release(ip)

	lc := newLimitConn(raw, s.limits.MaxStanzaBytes, s.limits.ReadBytesPerSecond)
	var conn net.Conn = &wsFilterConn{Conn: lc}
	var state xmpp.SessionState
	if directTLS {
		tc := tls.Server(lc, s.tlsDirect)
		conn = &wsFilterConn{Conn: tc, tls: tc}
		state = xmpp.Secure
	}
	if sc, ok := raw.(securedConn); ok {
		// RFC 7395 WebSocket, XEP-0206 BOSH (framing.go): HTTPS below the
		// transport already secures the stream, so no STARTTLS; channel
		// binding uses the transport's TLS state.
		conn = &tlsStateConn{Conn: conn, state: sc.transportTLS()}
		state = xmpp.Secure
	}
	sess := &Session{srv: s, lc: lc, ip: ip, log: log, writing: true}
	cc := &c2sConn{srv: s, sess: sess}

	// The deadline on the raw connection bounds the whole negotiation,
	// including the TLS handshake (mellium's context-based deadline resets
	// itself racily, so we do not give it one).
	deadline := time.Now().Add(s.limits.AuthTimeout)
	lc.SetDeadline(deadline)
	if !s.trackNegotiation(lc, raw) {
		raw.Close()
		return
	}
	xs, err := xmpp.ReceiveSession(context.Background(), conn, state, xmpp.NewNegotiator(cc.streamConfig))
	s.untrackNegotiation(lc)
	if cc.resumed != nil && err == nil {
		// XEP-0198 §5: the stream continues an earlier session.
		lc.SetDeadline(time.Time{})
		sess = cc.resumed
		gen := sess.startWriting(xs.Conn())
		s.readLoop(sess, xs, lc, gen)
		return
	}
	if err != nil || sess.jid.String() == "" {
		if xs != nil {
			conn = xs.Conn()
		}
		cc.fail(conn, err, !time.Now().Before(deadline))
		if sess.jid.String() != "" {
			s.router.unbind(sess)
		}
		return
	}
	lc.SetDeadline(time.Time{})
	sess.log = log.With("jid", sess.jid.String())
	gen := sess.startWriting(xs.Conn())
	sess.log.Info("session bound")
	s.readLoop(sess, xs, lc, gen)
}

// streamConfig is mellium's per-stream negotiation callback. It runs after the
// client's stream header was read and ours sent.
func (cc *c2sConn) streamConfig(xs *xmpp.Session, _ *xmpp.StreamConfig) xmpp.StreamConfig {
	if xs == nil {
		return xmpp.StreamConfig{}
	}
	cc.headerSent = true
	if to := xs.In().To; to.String() != "" && !to.Equal(cc.srv.domain) {
		// RFC 6120 §4.9.3.6: host-unknown. Write it now; the closed connection
		// makes mellium's feature list write fail and end negotiation.
		cc.hostErr = true
		c := xs.Conn()
		c.Write(newStreamError(stream.HostUnknown, "this server does not serve "+to.String()).bytes())
		c.Close()
		return xmpp.StreamConfig{}
	}
	state := xs.State()
	var cb *tls.Certificate
	if state&xmpp.Secure != 0 {
		cb = cc.srv.cert
		if cc.srv.getCert != nil {
			// The certificate this handshake presented; nil after a
			// resumed TLS session (no certificate sent), which then
			// offers tls-exporter only.
			cb = cc.sess.lc.served.Load()
		}
	}
	// One Authenticator serves the classic SASL feature and SASL2
	// (XEP-0388), so both offer the same mechanisms and channel bindings.
	sasl := auth.NewAuthenticator(auth.Options{
		Source:      credentialSource{cc.srv.store},
		Domain:      cc.srv.domain.String(),
		Certificate: cb,
		TLSState:    xs.ConnectionState,
		Throttle:    cc.srv.throttle,
		RemoteIP:    cc.sess.ip,
		OnSuccess:   func(u string) { cc.username = u },
		Logger:      cc.sess.log,
	})
	features := []xmpp.StreamFeature{
		cc.restarting(cc.startTLS()),
		cc.restarting(sasl.Feature()),
		cc.sasl2Feature(sasl),
		xmpp.BindCustom(cc.bind),
		cc.smFeature(),
		infoFeature(xml.Name{Space: NSCSI, Local: "csi"}),
		infoFeature(xml.Name{Space: "urn:xmpp:features:rosterver", Local: "ver"}),
		infoFeature(xml.Name{Space: "urn:xmpp:features:pre-approval", Local: "sub"}),
	}
	features = append(features, cc.srv.streamF...)
	features = append(features, cc.preAuthFeatures()...)
	return xmpp.StreamConfig{Lang: "en", Features: features}
}

// startTLS is mellium's STARTTLS feature (RFC 6120 §5) with our own server
// side: TLS runs directly on the limited raw connection and the whitespace
// filter goes on top of it, on the plaintext side.
func (cc *c2sConn) startTLS() xmpp.StreamFeature {
	f := xmpp.StartTLS(cc.srv.tlsStartTLS)
	f.Negotiate = func(ctx context.Context, xs *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
		if _, err := io.WriteString(xs.Conn(), "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
			return 0, nil, err
		}
		tc := tls.Server(cc.sess.lc, cc.srv.tlsStartTLS)
		return xmpp.Secure, &wsFilterConn{Conn: tc, tls: tc}, nil
	}
	return f
}

// restarting wraps a feature so that we know when a stream restart makes our
// previous stream header void (after STARTTLS and SASL, RFC 6120 §4.3.3).
func (cc *c2sConn) restarting(f xmpp.StreamFeature) xmpp.StreamFeature {
	neg := f.Negotiate
	f.Negotiate = func(ctx context.Context, xs *xmpp.Session, data any) (xmpp.SessionState, io.ReadWriter, error) {
		mask, rw, err := neg(ctx, xs, data)
		if rw != nil {
			cc.headerSent = false
		}
		return mask, rw, err
	}
	return f
}

// infoFeature is a stream feature that is only listed, after authentication
// (for example roster versioning, XEP-0237 §2.1, and pre-approval, RFC 6121 §3.4).
func infoFeature(name xml.Name) xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:      name,
		Necessary: xmpp.Authn,
		List: func(ctx context.Context, e xmlstream.TokenWriter, start xml.StartElement) (bool, error) {
			if err := e.EncodeToken(start); err != nil {
				return false, err
			}
			return false, e.EncodeToken(start.End())
		},
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
			return false, nil, d.Skip()
		},
	}
}

// bind assigns the full JID (RFC 6120 §7.6): the requested resource if valid,
// or a generated one. An existing session with the same resource is replaced
// (RFC 6120 §7.7.2.2, the new session wins).
func (cc *c2sConn) bind(_ jid.JID, resource string) (jid.JID, error) {
	if cc.username == "" {
		return jid.JID{}, stanza.Error{Type: stanza.Auth, Condition: stanza.NotAuthorized}
	}
	resource = strings.TrimSpace(resource)
	if resource == "" {
		resource = "hearth-" + randomID(6)
	}
	full, err := jid.New(cc.username, cc.srv.domain.Domainpart(), resource)
	if err != nil {
		return jid.JID{}, stanza.Error{Type: stanza.Modify, Condition: stanza.BadRequest}
	}
	sess := cc.sess
	sess.jid = full
	sess.bare = full.Bare()
	sess.username = full.Localpart()
	sess.since = cc.srv.now()
	if old := cc.srv.router.bind(sess); old != nil {
		old.log.Info("resource conflict: replaced by a new session")
		old.Terminate(newStreamError(stream.Conflict, "replaced by new connection"))
	}
	if cc.srv.isClosing() {
		// Server.Shutdown sets closing before it ends the routed sessions,
		// so a session bound after that scan is seen here: it ends like the
		// others, with system-shutdown after the bind reply (RFC 6120
		// §4.9.3.19), instead of living on while Shutdown waits for it.
		sess.Terminate(newStreamError(streamSystemShutdown, "server shutting down"))
	}
	return full, nil
}

// fail ends a connection whose negotiation did not reach a bound session,
// sending the stream error that matches err (RFC 6120 §4.9.3).
func (cc *c2sConn) fail(conn net.Conn, err error, timedOut bool) {
	defer conn.Close()
	if cc.hostErr {
		return
	}
	var se *streamError
	var ms stream.Error
	var synErr *xml.SyntaxError
	var ne net.Error
	switch {
	case err == nil:
		se = newStreamError(stream.NotAuthorized, "negotiation ended without a bound resource")
	case errors.As(err, &se):
		// A web transport's framing violation (framing.go).
	case cc.srv.isClosing() && (errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())):
		se = newStreamError(streamSystemShutdown, "server shutting down")
	case timedOut || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		se = newStreamError(stream.ConnectionTimeout, "authentication took too long")
	case errors.Is(err, errStanzaTooBig):
		se = newStreamError(stream.PolicyViolation, "element too large")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		cc.sess.log.Debug("client left during negotiation", "err", err)
		return
	case errors.As(err, &ms):
		se = &streamError{cond: ms}
	case errors.As(err, &synErr):
		se = newStreamError(stream.NotWellFormed, synErr.Msg)
	case strings.HasPrefix(err.Error(), "disallowed XML"):
		se = newStreamError(stream.RestrictedXML, "comments, processing instructions and DTDs are not allowed")
	case errors.Is(err, auth.ErrTooManyFailures):
		se = newStreamError(stream.PolicyViolation, "too many failed authentication attempts")
	case errors.Is(err, auth.ErrUnexpectedElement):
		se = newStreamError(stream.NotAuthorized, "authenticate first")
	default:
		var tlsErr tls.RecordHeaderError
		if errors.As(err, &tlsErr) || strings.Contains(err.Error(), "tls:") {
			cc.sess.log.Info("TLS handshake failed", "err", err)
			return
		}
		if strings.Contains(err.Error(), "chardata") || strings.Contains(err.Error(), "invalid") {
			se = newStreamError(stream.NotWellFormed, "")
		} else {
			se = newStreamError(stream.PolicyViolation, "")
		}
	}
	cc.sess.log.Info("negotiation failed", "err", err, "condition", se.cond.Err)
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if !cc.headerSent {
		conn.Write(cc.srv.streamHeader())
	}
	conn.Write(se.bytes())
}

// streamHeader is the response header written before an error when the peer's
// header was never accepted (RFC 6120 §4.9.1.3).
func (s *Server) streamHeader() []byte {
	return []byte(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' from='` +
		s.domain.String() + `' id='` + randomID(8) + `'>`)
}

// readLoop reads stanzas from one connection of sess until the stream ends.
// Then, if the connection was lost and stream management allows, the session
// hibernates (XEP-0198 §5); if it was resumed on another connection meanwhile
// (gen changed) nothing more happens here; otherwise the session ends.
func (s *Server) readLoop(sess *Session, xs *xmpp.Session, lc *limitConn, gen int) {
	r := xs.TokenReader()
	defer r.Close()
	ctx := context.Background()
	var se *streamError
	lost := false
	for se == nil {
		lc.reset()
		tok, err := r.Token()
		if err != nil {
			se, lost = s.readError(sess, err)
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := xmlel.Decode(r, t)
			if err != nil {
				se, lost = s.readError(sess, err)
				break
			}
			switch el.Name.Space {
			case NSSM:
				se = s.handleSM(sess, el)
			case NSCSI:
				s.handleCSI(sess, el)
			default:
				se = s.handleFromClient(ctx, sess, el)
				sess.countInbound()
			}
		case xml.CharData:
			// Whitespace keepalive (RFC 6120 §4.6.1); mellium rejects other text.
		case xml.Comment, xml.ProcInst, xml.Directive:
			se = newStreamError(stream.RestrictedXML, "comments, processing instructions and DTDs are not allowed")
		}
	}
	s.finishConnection(ctx, sess, xs.Conn(), gen, lost, se)
}

// finishConnection decides what follows the end of one of sess's
// connections, atomically with respect to a resumption (which checks
// 'closing' under the same lock): nothing if the session already moved to
// another connection, hibernation if the connection was lost and stream
// management allows it (XEP-0198 §5), otherwise the end of the session, after
// the writer has flushed what is queued, then se or the closing tag.
func (s *Server) finishConnection(ctx context.Context, sess *Session, conn net.Conn, gen int, lost bool, se *streamError) {
	shuttingDown := s.isClosing()
	sess.outMu.Lock()
	if sess.gen != gen {
		sess.outMu.Unlock()
		return // resumed on another connection
	}
	if lost && !shuttingDown && s.hibernateLocked(sess) {
		unacked := len(sess.sm.unacked)
		sess.outMu.Unlock()
		conn.Close()
		s.router.mu.Lock()
		sess.hibernated = true
		s.router.mu.Unlock()
		sess.log.Info("connection lost, session hibernated", "unacked", unacked, "timeout", s.limits.ResumeTimeout)
		return
	}
	after := sess.terminateLocked(se)
	sess.outMu.Unlock()
	after()
	s.endSession(ctx, sess)
}

// readError maps a read failure to the stream error to send (an empty one
// when there is nothing to say) and reports whether the connection was lost
// rather than closed or broken by the peer on purpose.
func (s *Server) readError(sess *Session, err error) (se *streamError, lost bool) {
	var ms stream.Error
	var synErr *xml.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return &streamError{}, false // peer closed its stream: answer with our close tag
	case errors.As(err, &se):
		return se, false // a web transport's framing violation (framing.go)
	case errors.Is(err, errStanzaTooBig):
		return newStreamError(stream.PolicyViolation, "stanza too large (limit "+itoa(int64(s.limits.MaxStanzaBytes))+" bytes)"), false
	case errors.Is(err, xmlel.ErrRestrictedXML):
		return newStreamError(stream.RestrictedXML, "comments, processing instructions and DTDs are not allowed"), false
	case errors.As(err, &ms):
		sess.log.Info("peer sent stream error", "condition", ms.Err)
		return &streamError{}, false
	case strings.HasPrefix(err.Error(), "disallowed XML"):
		// mellium's stream reader rejects these tokens itself (RFC 6120 §11.1).
		return newStreamError(stream.RestrictedXML, "comments, processing instructions and DTDs are not allowed"), false
	case errors.As(err, &synErr):
		if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(synErr.Msg, "unexpected EOF") {
			return &streamError{}, true
		}
		return newStreamError(stream.NotWellFormed, synErr.Msg), false
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded):
		return &streamError{}, true
	default:
		var ne net.Error
		if errors.As(err, &ne) {
			return &streamError{}, true
		}
		if strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe") {
			return &streamError{}, true
		}
		sess.log.Info("bad input", "err", err)
		return newStreamError(stream.NotWellFormed, ""), false
	}
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// credentialSource adapts the store to the SASL feature's lookup.
type credentialSource struct{ st *store.Store }

func (c credentialSource) Credential(ctx context.Context, username, hash string) (auth.Credential, error) {
	k, err := c.st.Credentials(ctx, username, hash)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Credential{}, auth.ErrUnknownUser
	}
	if err != nil {
		return auth.Credential{}, err
	}
	return auth.Credential{Hash: k.Hash, Salt: k.Salt, Iterations: k.Iterations, StoredKey: k.StoredKey, ServerKey: k.ServerKey}, nil
}

// trackNegotiation records lc, a TCP stream about to negotiate, for
// Shutdown; it reports false when the server is already shutting down.
// Web transports (raw a securedConn) are aborted by ShutdownWeb instead.
func (s *Server) trackNegotiation(lc *limitConn, raw net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if _, web := raw.(securedConn); web {
		return true
	}
	if s.negotiating == nil {
		s.negotiating = map[*limitConn]struct{}{}
	}
	s.negotiating[lc] = struct{}{}
	return true
}

// untrackNegotiation forgets lc once its negotiation ended.
func (s *Server) untrackNegotiation(lc *limitConn) {
	s.mu.Lock()
	delete(s.negotiating, lc)
	s.mu.Unlock()
}
