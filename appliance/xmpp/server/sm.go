package server

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// Namespaces of the session-layer extensions.
const (
	// NSSM is XEP-0198 stream management, version 3.
	NSSM = "urn:xmpp:sm:3"
	// NSCSI is XEP-0352 client state indication.
	NSCSI = "urn:xmpp:csi:0"
)

// smState is a session's stream management state (XEP-0198). All fields are
// guarded by Session.outMu.
type smState struct {
	id        string // resumption id; "" when resumption was not requested
	inH       uint32 // stanzas handled from the client (XEP-0198 §4 "h")
	outH      uint32 // stanzas sent to the client
	unacked   []unackedStanza
	requested bool        // an <r/> is outstanding
	timer     *time.Timer // running while hibernated (XEP-0198 §5)
}

// unackedStanza is a stanza sent but not yet acknowledged, with its count.
type unackedStanza struct {
	h  uint32
	el *xmlel.Element
	b  []byte
	at time.Time // when it was sent, for the delay stamp if it is rerouted
}

// ack applies an acknowledgement of h handled stanzas (counted modulo 2^32,
// XEP-0198 §4) and reports whether h was plausible (not more than were sent).
func (sm *smState) ack(h uint32) bool {
	acked := sm.outH - uint32(len(sm.unacked)) // h of the last stanza already acknowledged
	n := h - acked
	if n > uint32(len(sm.unacked)) {
		return false
	}
	rest := make([]unackedStanza, len(sm.unacked)-int(n))
	copy(rest, sm.unacked[n:])
	sm.unacked = rest
	return true
}

// handleSM processes a stream management element from a bound session
// (XEP-0198 §3 and §4).
func (s *Server) handleSM(sess *Session, el *xmlel.Element) *streamError {
	switch el.Name.Local {
	case "enable":
		resume := el.Get("resume") == "true" || el.Get("resume") == "1"
		if reply, ok := s.enableSM(sess, resume, true); !ok {
			sess.sendNonza(reply)
		}
	case "r":
		sess.outMu.Lock()
		var h uint32
		enabled := sess.sm != nil
		if enabled {
			h = sess.sm.inH
		}
		sess.outMu.Unlock()
		if !enabled {
			return newStreamError(stream.UnsupportedStanzaType, "stream management is not enabled")
		}
		sess.sendNonza(xmlel.New(NSSM, "a", "h", strconv.FormatUint(uint64(h), 10)))
	case "a":
		h, err := strconv.ParseUint(el.Get("h"), 10, 32)
		if err != nil {
			return newStreamError(stream.UndefinedCondition, "invalid 'h'")
		}
		sess.outMu.Lock()
		if sess.sm == nil {
			sess.outMu.Unlock()
			return newStreamError(stream.UnsupportedStanzaType, "stream management is not enabled")
		}
		sess.sm.requested = false
		ok := sess.sm.ack(uint32(h))
		sent := sess.sm.outH
		sess.outMu.Unlock()
		if !ok {
			return handledCountTooHigh(uint32(h), sent)
		}
	case "resume":
		sess.sendNonza(smFailed("unexpected-request", "resumption happens instead of resource binding"))
	default:
		return newStreamError(stream.UnsupportedStanzaType, "unknown stream management element <"+el.Name.Local+"/>")
	}
	return nil
}

// enableSM turns stream management on for sess (XEP-0198 §3), with a
// resumption id if resume is set, and returns the <enabled/> element, or
// <failed/> and false when it was already on. Counting starts right after
// <enabled/>: with queue set and a live connection the element is queued
// under the same lock as the state change (the classic <enable/>); without,
// the caller delivers it before anything queued for the session is written
// (XEP-0386 Bind 2 puts it in <bound/>, before the writer starts).
func (s *Server) enableSM(sess *Session, resume, queue bool) (*xmlel.Element, bool) {
	sess.outMu.Lock()
	if sess.sm != nil {
		sess.outMu.Unlock()
		return smFailed("unexpected-request", "stream management is already enabled"), false
	}
	sm := &smState{}
	enabled := xmlel.New(NSSM, "enabled")
	if resume {
		sm.id = randomID(16)
		enabled.Set("id", sm.id).Set("resume", "true").Set("max", strconv.Itoa(int(s.limits.ResumeTimeout/time.Second)))
	}
	sess.sm = sm
	if queue && sess.conn != nil {
		sess.enqueueLocked(enabled.Bytes(NSClient))
	}
	sess.outMu.Unlock()
	if resume {
		s.smMu.Lock()
		s.smIndex[sm.id] = sess
		s.smMu.Unlock()
	}
	sess.log.Debug("stream management enabled", "resume", resume)
	return enabled, true
}

// handledCountTooHigh is the stream error of XEP-0198 §4 for an 'h' that
// acknowledges stanzas never sent.
func handledCountTooHigh(h, sent uint32) *streamError {
	return newStreamError(stream.UndefinedCondition, fmt.Sprintf("handled-count-too-high: h=%d, sent %d", h, sent))
}

// smFailed is <failed/> with a stanza error condition (XEP-0198 §3, §5).
func smFailed(cond, text string) *xmlel.Element {
	f := xmlel.New(NSSM, "failed")
	f.Add(xmlel.New(NSStanzas, cond))
	if text != "" {
		f.Add(xmlel.New(NSStanzas, "text").AddText(text))
	}
	return f
}

// countInbound counts one handled stanza from the client (XEP-0198 §4).
// It is called after the stanza was fully processed, so an acknowledgement
// never covers a stanza whose effects (archive, offline storage) are not yet
// committed.
func (sess *Session) countInbound() {
	sess.outMu.Lock()
	if sess.sm != nil {
		sess.sm.inH++
	}
	sess.outMu.Unlock()
}

// hibernateLocked keeps a session whose connection was lost for resumption
// (XEP-0198 §5) and reports whether it could; outMu is held. The caller
// marks the session hibernated in the router.
func (s *Server) hibernateLocked(sess *Session) bool {
	if sess.closing || sess.closed || sess.sm == nil || sess.sm.id == "" {
		return false
	}
	sess.gen++
	sess.conn = nil
	sess.queue = nil
	sess.queued = 0
	sess.sm.requested = false
	hgen := sess.gen
	sess.sm.timer = time.AfterFunc(s.limits.ResumeTimeout, func() { s.expireHibernation(sess, hgen) })
	return true
}

// expireHibernation ends a session that was not resumed in time.
func (s *Server) expireHibernation(sess *Session, gen int) {
	sess.outMu.Lock()
	if sess.gen != gen || sess.conn != nil || sess.closing || sess.closed {
		sess.outMu.Unlock()
		return
	}
	sess.closing = true
	sess.outMu.Unlock()
	sess.log.Info("hibernated session expired")
	s.endSession(context.Background(), sess)
}

// endHibernated ends a hibernated session right away (shutdown, limits).
func (s *Server) endHibernated(sess *Session) {
	s.endSession(context.Background(), sess)
}

// endSession tears a session down exactly once: unregister, unavailable
// presence, hooks, and rerouting of what the client never acknowledged
// (XEP-0198 §4: unacknowledged stanzas are treated as undelivered).
func (s *Server) endSession(ctx context.Context, sess *Session) {
	sess.endOnce.Do(func() {
		sess.outMu.Lock()
		var pending []unackedStanza
		if sess.sm != nil {
			pending = sess.sm.unacked
			sess.sm.unacked = nil
			if sess.sm.timer != nil {
				sess.sm.timer.Stop()
			}
			if sess.sm.id != "" {
				s.smMu.Lock()
				if s.smIndex[sess.sm.id] == sess {
					delete(s.smIndex, sess.sm.id)
				}
				s.smMu.Unlock()
			}
		}
		sess.closed = sess.conn == nil // a live connection is closed by its writer
		sess.outMu.Unlock()
		s.teardown(ctx, sess)
		for _, u := range pending {
			s.reroute(ctx, sess, u.el, u.at)
		}
	})
}

// withDelay returns st with a XEP-0203 delay stamp, unless it has one.
func withDelay(st *xmlel.Element, from string, at time.Time) *xmlel.Element {
	if st.Child(NSDelay, "delay") != nil {
		return st
	}
	c := st.ShallowCopy()
	return c.Add(xmlel.New(NSDelay, "delay", "from", from, "stamp", delayStamp(at)))
}

// reroute redelivers a stanza a session never acknowledged, as if its
// resource had gone before it arrived (RFC 6121 §8.5.3.2.1): messages go to
// the account's other resources or offline storage, IQ requests are answered
// with service-unavailable, the rest is dropped.
func (s *Server) reroute(ctx context.Context, sess *Session, st *xmlel.Element, sent time.Time) {
	switch st.Name.Local {
	case "message":
		typ := st.Get("type")
		if typ != "" && typ != "normal" && typ != "chat" {
			return
		}
		// Delivered late, wherever it lands now (XEP-0203).
		st = withDelay(st, s.domain.String(), sent)
		from, _ := jid.Parse(st.Get("from"))
		m := &Message{Stanza: st, From: from, To: sess.bare, Type: typ}
		delivered := s.deliverToBare(ctx, m)
		if len(delivered) > 0 || m.Offline {
			for _, h := range s.hooks.delivered {
				h(ctx, m, delivered)
			}
		}
	case "iq":
		if t := st.Get("type"); t == "get" || t == "set" {
			s.bounce(ctx, st, ErrServiceUnavailable)
		}
	}
}

// smFeature lists stream management after authentication and handles
// resumption in place of resource binding (XEP-0198 §5). If resumption fails
// the client may still bind a resource, which this feature then does itself
// (mellium cannot hand the negotiation back to the bind feature).
func (cc *c2sConn) smFeature() xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: NSSM, Local: "sm"},
		Necessary:  xmpp.Authn,
		Prohibited: xmpp.Ready,
		List: func(ctx context.Context, e xmlstream.TokenWriter, start xml.StartElement) (bool, error) {
			if err := e.EncodeToken(start); err != nil {
				return true, err
			}
			// Reported as required so that mellium ends negotiation once it
			// ran; it is not listed as <required/> on the wire.
			return true, e.EncodeToken(start.End())
		},
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
			return false, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, xs *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
			r := xs.TokenReader()
			defer r.Close()
			el, err := nextElement(r)
			if err != nil {
				return 0, nil, err
			}
			if el.Name.Local != "resume" {
				xs.Conn().Write(smFailed("unexpected-request", "bind a resource first").Bytes(NSClient))
				return 0, nil, errors.New("stream management element before resource binding")
			}
			if cc.resume(xs, el) {
				return xmpp.Ready, nil, nil
			}
			// The client may go on with resource binding.
			el, err = nextElement(r)
			if err != nil {
				return 0, nil, err
			}
			return cc.bindFallback(xs, el)
		},
	}
}

// nextElement decodes the next element, skipping whitespace.
func nextElement(r xml.TokenReader) (*xmlel.Element, error) {
	for {
		tok, err := r.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return xmlel.Decode(r, t)
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return nil, stream.NotWellFormed
			}
		default:
			return nil, stream.RestrictedXML
		}
	}
}

// resume moves a hibernated (or not yet noticed dead) session onto this
// connection (XEP-0198 §5) and reports whether it did; it has written
// <resumed/>, or <failed/> or a stream error on failure.
func (cc *c2sConn) resume(xs *xmpp.Session, el *xmlel.Element) bool {
	conn := xs.Conn()
	reply, se := cc.takeOver(conn, el)
	switch {
	case se != nil:
		conn.Write(se.bytes())
		return false
	case reply.Name.Local != "resumed":
		conn.Write(reply.Bytes(NSClient))
		return false
	}
	if _, err := conn.Write(reply.Bytes(NSClient)); err != nil {
		cc.abandonTakeOver(conn)
		return false
	}
	cc.resumed.log.Info("session resumed", "ip", cc.sess.ip.String())
	return true
}

// abandonTakeOver handles a connection that failed right after takeOver,
// before its reader started: the session hibernates again, as if this
// connection had been lost, or ends if it cannot.
func (cc *c2sConn) abandonTakeOver(conn net.Conn) {
	old := cc.resumed
	cc.resumed = nil
	old.outMu.Lock()
	old.writing = false
	gen := old.gen
	old.outMu.Unlock()
	cc.srv.finishConnection(context.Background(), old, conn, gen, true, &streamError{})
}

// takeOver moves the session that <resume/> el names onto conn (XEP-0198
// §5) and returns the <resumed/> element to send before anything else;
// cc.resumed is then set and the session's unacknowledged stanzas wait in
// its queue until startWriting. On failure it returns <failed/> (the old
// session is untouched), or a stream error when 'h' acknowledges more than
// was sent. The classic <resume/> writes the reply itself; XEP-0388 SASL2
// puts it in <success/>.
func (cc *c2sConn) takeOver(conn net.Conn, el *xmlel.Element) (*xmlel.Element, *streamError) {
	s := cc.srv
	previd := el.Get("previd")
	h, err := strconv.ParseUint(el.Get("h"), 10, 32)
	s.smMu.Lock()
	old := s.smIndex[previd]
	s.smMu.Unlock()
	fail := func(text string) (*xmlel.Element, *streamError) {
		cc.sess.log.Info("stream resumption failed", "reason", text)
		return smFailed("item-not-found", text), nil
	}
	if err != nil || old == nil || old.username != cc.username {
		return fail("unknown or expired session")
	}
	old.outMu.Lock()
	if old.closing || old.closed || old.sm == nil {
		old.outMu.Unlock()
		return fail("unknown or expired session")
	}
	if !old.sm.ack(uint32(h)) {
		sent := old.sm.outH
		old.outMu.Unlock()
		return nil, handledCountTooHigh(uint32(h), sent)
	}
	prev := old.conn
	old.gen++
	old.conn = conn
	old.lc = cc.sess.lc
	old.ip = cc.sess.ip
	old.writing = true // the negotiation owns the connection until startWriting
	old.queue = nil
	old.queued = 0
	for _, u := range old.sm.unacked {
		old.queue = append(old.queue, u.b)
		old.queued += len(u.b)
	}
	old.sm.requested = false
	if old.sm.timer != nil {
		old.sm.timer.Stop()
		old.sm.timer = nil
	}
	inH := old.sm.inH
	resent := len(old.sm.unacked)
	old.outMu.Unlock()
	if prev != nil {
		prev.Close() // the old reader sees a new generation and leaves quietly
	}
	s.router.mu.Lock()
	old.hibernated = false
	s.router.mu.Unlock()
	cc.resumed = old
	old.log.Debug("session taken over", "resent", resent)
	return xmlel.New(NSSM, "resumed", "h", strconv.FormatUint(uint64(inH), 10), "previd", previd), nil
}

// bindFallback performs resource binding (RFC 6120 §7) for a client whose
// resumption failed, since mellium's bind feature cannot run after ours.
func (cc *c2sConn) bindFallback(xs *xmpp.Session, iq *xmlel.Element) (xmpp.SessionState, io.ReadWriter, error) {
	b := iq.Child("urn:ietf:params:xml:ns:xmpp-bind", "bind")
	if iq.Name.Local != "iq" || iq.Get("type") != "set" || b == nil {
		return 0, nil, stream.NotAuthorized
	}
	reply := xmlel.New(NSClient, "iq", "type", "result", "id", iq.Get("id"))
	full, bindErr := cc.bind(jid.JID{}, b.ChildText("", "resource"))
	if bindErr != nil {
		reply.Set("type", "error")
		reply.Add(Errorf(ErrBadRequest, "cannot bind that resource").Element())
	} else {
		reply.Add(xmlel.New("urn:ietf:params:xml:ns:xmpp-bind", "bind").Add(
			xmlel.New("urn:ietf:params:xml:ns:xmpp-bind", "jid").AddText(full.String())))
	}
	if _, err := xs.Conn().Write(reply.Bytes(NSClient)); err != nil {
		return 0, nil, err
	}
	if bindErr != nil {
		return 0, nil, errors.New("resource binding failed")
	}
	return xmpp.Ready, nil, nil
}
